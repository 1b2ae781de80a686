/* The pod sandbox ("pause") image of the local test cluster: sleeps until SIGINT or SIGTERM and
 * reaps any zombie it inherits as PID 1. Built with `gcc -static` by tests/cluster/up, because
 * no container registry can be reached to pull the upstream one. */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_term(int sig) { (void)sig; _exit(0); }

static void on_child(int sig) {
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(void) {
  struct sigaction term = {.sa_handler = on_term};
  struct sigaction child = {.sa_handler = on_child, .sa_flags = SA_NOCLDSTOP | SA_RESTART};
  if (sigaction(SIGINT, &term, NULL) || sigaction(SIGTERM, &term, NULL) ||
      sigaction(SIGCHLD, &child, NULL)) {
    return 1;
  }
  for (;;) pause();
}
