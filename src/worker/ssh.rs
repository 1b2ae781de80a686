//! A worker over one SSH connection: one channel per running job.
