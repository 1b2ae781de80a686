//! `kb parallel --pods N --async`: read the whole input, create the task, hand the run over to a coordinator pod
//! (`kb coordinate`) and return. See docs/architecture.md, "`--async`".

use crate::commands::error::{Error, Result};
use crate::commands::parallel::ParallelOpts;
use crate::input::Inputs;
use crate::k8s::coordinator::{Handover, RUN_DIR, column_key};

/// Runs `kb parallel --async`.
pub async fn exec(opts: ParallelOpts) -> Result<u8> {
    refuse_unsupported(&opts)?;
    let lifetime = opts
        .pods
        .shape
        .to_shape()
        .lifetime(crate::k8s::LifetimeFallback::default())?;
    let (words, sources) = crate::input::split_command(&opts.command);
    let spec = super::run::input_spec(&opts, sources);
    // The whole input is read before anything is created: the client may go away right after.
    let records = tokio::task::spawn_blocking(move || -> Result<Vec<Vec<String>>> {
        Ok(Inputs::open(spec)?.collect::<Result<_, _>>()?)
    })
    .await
    .map_err(|e| Error::Io {
        action: "read the input".into(),
        source: std::io::Error::other(e),
    })??;
    let command_line = opts.command.join(" ");
    let slots = opts.pods.procs_per_pod.or(super::run::jobs_here(&opts));
    let request = opts.pods.request(
        "parallel",
        &command_line,
        slots,
        opts.pods.pods.unwrap_or(1),
    );
    // Handing a run over is the Kubernetes backend's own step: the coordinator runs in the cluster.
    let task = crate::k8s::PodTask::create_with(crate::k8s::TaskRequest {
        target: opts.pods.target(),
        shape: request.shape,
        pods: request.count,
        slots: request.slots,
        kind: request.kind,
        command: request.command,
        lifetime,
        reporter: crate::output::report::Reporter::plain(),
    })
    .await?;
    let announcement = task.announcement();
    let handover = Handover {
        args: build_coordinator_args(&opts, &words, task.slots(), columns(&records).len()),
        columns: columns(&records),
        ..Default::default()
    };
    let id = crate::k8s::task::hand_over(task, handover).await?;
    eprintln!("{announcement}");
    eprintln!(
        "kb: task {id} runs on its own (--async): `kb logs {id} -f` follows it, `kb status` shows it, \
         `kb finish {id}` removes it"
    );
    println!("{id}");
    Ok(crate::error::exit::SUCCESS)
}

fn refuse_unsupported(opts: &ParallelOpts) -> Result<()> {
    let refuse = |what: &str, why: &str| {
        Err(Error::usage(
            format!("--async does not work with {what}"),
            why,
        ))
    };
    if !opts.sshlogin.is_empty() || !opts.sshloginfile.is_empty() || opts.local_procs.is_some() {
        return refuse(
            "-S or --local-procs",
            "the coordinator runs in the cluster and reaches only the task's pods; drop -S/--local-procs",
        );
    }
    match opts.pods.shape.share {
        Some(crate::config::Share::Lazy) => {
            return refuse(
                "the lazy share",
                "a lazy share reads files from this machine while the jobs run, and --async lets this machine go \
                 away; use --share eager (the tree is uploaded before the client returns)",
            );
        }
        Some(crate::config::Share::Syncback) => {
            return refuse(
                "syncback",
                "syncback brings the jobs' files back to this machine after the run, and with --async nobody is \
                 there then; use --share eager, and have the jobs print what you need (`kb logs ID`)",
            );
        }
        _ => {}
    }
    if opts.joblog.is_some() {
        return refuse(
            "--joblog",
            "the joblog of an --async run is not kept yet; `kb logs ID` shows the output and the exit status",
        );
    }
    Ok(())
}

/// The records' columns (one per input source), each item NUL-terminated; one empty column for no input.
fn columns(records: &[Vec<String>]) -> Vec<Vec<u8>> {
    let width = records.iter().map(Vec::len).max().unwrap_or(1).max(1);
    let mut columns = vec![Vec::new(); width];
    for record in records {
        for (n, column) in columns.iter_mut().enumerate() {
            column.extend_from_slice(record.get(n).map_or("", String::as_str).as_bytes());
            column.push(0);
        }
    }
    columns
}

/// The coordinator's `kb parallel` argv: the options that shape the run, the task's pods, and the input as NUL-
/// separated files linked column by column (`:::: col0 ::::+ col1 ...`).
fn build_coordinator_args(
    opts: &ParallelOpts,
    words: &[String],
    slots: usize,
    width: usize,
) -> Vec<String> {
    let mut args: Vec<String> = vec!["kb".into(), "parallel".into()];
    let mut push = |flag: &str, value: Option<String>| {
        args.push(flag.to_string());
        args.extend(value);
    };
    push("--pods", Some(opts.pods.pods.unwrap_or(1).to_string()));
    push("--procs-per-pod", Some(slots.to_string()));
    if opts.keep_order {
        push("-k", None);
    }
    if opts.line_buffer {
        push("--line-buffer", None);
    }
    if opts.ungroup {
        push("--ungroup", None);
    }
    if opts.verbose_stdout > 0 {
        push("-v", None);
    }
    if opts.trace {
        push("--verbose", None);
    }
    if opts.tag {
        push("--tag", None);
    }
    if opts.value_replacement() != "{}" {
        push("-I", Some(opts.value_replacement().to_string()));
    }
    if let Some(tag) = &opts.tagstring {
        push("--tagstring", Some(tag.clone()));
    }
    push("--retries", Some(opts.retries.to_string()));
    if let Some(halt) = &opts.halt {
        push("--halt", Some(halt.clone()));
    }
    if let Some(timeout) = &opts.timeout {
        push("--timeout", Some(timeout.clone()));
    }
    push("--grace", Some(opts.grace.to_string()));
    push("-0", None);
    push("--", None);
    args.extend(words.iter().cloned());
    for n in 0..width {
        args.push(if n == 0 { "::::" } else { "::::+" }.into());
        args.push(format!("{RUN_DIR}/{}", column_key(n)));
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_nul_terminated_and_linked() {
        let records = vec![
            vec!["a b".into(), "1".into()],
            vec!["c\nd".into(), "2".into()],
        ];
        let cols = columns(&records);
        assert_eq!(cols, vec![b"a b\0c\nd\0".to_vec(), b"1\x002\x00".to_vec()]);
        assert_eq!(columns(&[]), vec![Vec::<u8>::new()]);
    }

    #[test]
    fn coordinator_args_parse_as_kb_parallel() {
        use clap::Parser;

        use crate::commands::parallel::ParallelLine;
        let ParallelLine::Parallel(opts) = ParallelLine::try_parse_from([
            "kb",
            "parallel",
            "--pods",
            "2",
            "--async",
            "-k",
            "--halt",
            "now,fail=1",
            "--",
            "echo",
            "{1}-{2}",
            ":::",
            "a",
            ":::",
            "1",
        ])
        .unwrap();
        let (words, _) = crate::input::split_command(&opts.command);
        let args = build_coordinator_args(&opts, &words, 3, 2);
        let ParallelLine::Parallel(run) = ParallelLine::try_parse_from(&args).unwrap();
        assert!(!run.r#async && run.keep_order && run.null);
        assert_eq!((run.pods.pods, run.pods.procs_per_pod), (Some(2), Some(3)));
        assert_eq!(run.halt.as_deref(), Some("now,fail=1"));
        assert_eq!(
            run.command,
            [
                "echo",
                "{1}-{2}",
                "::::",
                "/etc/kb-run/col0",
                "::::+",
                "/etc/kb-run/col1"
            ]
        );
    }
}
