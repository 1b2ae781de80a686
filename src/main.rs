//! The `kb` binary: parse the command line, build the runtime, run, map the outcome to an exit status.

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match kb::cli::parse_args(std::env::args_os()) {
        Ok(cli) => cli,
        Err(code) => return ExitCode::from(code),
    };
    kb::init_tracing(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("kb: error: failed to start the async runtime: {err}");
            return ExitCode::from(kb::error::exit::OTHER);
        }
    };
    let code = runtime.block_on(kb::run(cli));
    // Jobs and connections are owned by tasks that have finished by now; do not wait for stray blocking readers
    // (a stdin reader blocked on a terminal, for example).
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    ExitCode::from(code)
}
