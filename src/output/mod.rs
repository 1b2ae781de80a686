//! What the user reads: job output in GNU parallel's modes, and progress on stderr.
