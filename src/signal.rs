//! Ctrl-C and SIGTERM: counted, so the first asks for a graceful stop and the second for an immediate one.
