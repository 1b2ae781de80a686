//! `kb status`: options.

use super::pods::KubeOpts;

/// How `kb status` prints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// A table for people.
    #[default]
    Table,
    /// A JSON array of tasks.
    Json,
    /// A YAML list of tasks.
    Yaml,
}

/// Options of `kb status`.
#[derive(Debug, Clone, clap::Args)]
pub struct StatusOpts {
    /// Show the tasks of every machine, not only this one's.
    #[arg(short = 'A', long = "all")]
    pub all: bool,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Cluster and namespace.
    #[command(flatten)]
    pub kube: KubeOpts,
}
