//! `kb status`: list the tasks of this machine (or everyone's) in the namespace and in the local Docker engine.

use std::io::Write;

use crate::commands::error::{Error, Result};
use crate::commands::options::KubeOpts;
use crate::model::{TaskRow, render_table};

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

/// Runs `kb status`.
pub async fn exec(opts: StatusOpts) -> Result<u8> {
    let backends = opts.kube.backends();
    let listed =
        futures::future::join_all(backends.iter().map(|backend| backend.list(opts.all))).await;
    let mut rows: Vec<TaskRow> = Vec::new();
    let mut failed = Vec::new();
    for result in listed {
        match result {
            Ok(found) => rows.extend(found),
            Err(err) => failed.push(err),
        }
    }
    // A backend that cannot be reached fails the command only when no other one has a task to show.
    if !failed.is_empty() && rows.is_empty() {
        return Err(failed.remove(0).into());
    }
    for err in &failed {
        eprintln!("kb: warning: {}", crate::error::chain(err));
    }
    rows.sort_by(|a, b| a.id.cmp(&b.id));
    let encode = |format: &'static str, source: Box<dyn std::error::Error + Send + Sync>| {
        Error::K8s(crate::k8s::Error::Encode { format, source })
    };
    let text = match opts.output {
        OutputFormat::Table if rows.is_empty() => {
            let scopes: Vec<String> = backends.iter().filter_map(|b| b.scope()).collect();
            eprintln!("no tasks in {}", scopes.join(" or in "));
            return Ok(crate::error::exit::SUCCESS);
        }
        OutputFormat::Table => render_table(&rows, opts.all),
        OutputFormat::Json => {
            serde_json::to_string_pretty(&rows).map_err(|e| encode("json", Box::new(e)))? + "\n"
        }
        OutputFormat::Yaml => {
            serde_yaml_ng::to_string(&rows).map_err(|e| encode("yaml", Box::new(e)))?
        }
    };
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Io {
            action: "write the status to stdout".into(),
            source: err,
        }),
        _ => Ok(crate::error::exit::SUCCESS),
    }
}
