//! `kb status`: list the tasks of this machine (or everyone's) in the namespace.

use std::io::Write;

use crate::cli::status::{OutputFormat, StatusOpts};
use crate::commands::error::{Error, Result};
use crate::k8s::client::{STATUS_RIGHTS, connect};
use crate::k8s::status::{list_tasks, render_table};

/// Runs `kb status`.
pub async fn exec(opts: StatusOpts) -> Result<u8> {
    let kube = connect(&opts.kube.target(), STATUS_RIGHTS).await?;
    let rows = list_tasks(&kube, opts.all).await?;
    let encode = |format: &'static str, source: Box<dyn std::error::Error + Send + Sync>| {
        Error::K8s(crate::k8s::Error::Encode { format, source })
    };
    let text = match opts.output {
        OutputFormat::Table if rows.is_empty() => {
            eprintln!("no tasks in namespace `{}`", kube.namespace);
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
