//! GNU parallel's joblog: the tab-separated file of `--joblog` (`+FILE` appends, `-` is stdout), and reading it
//! back for `--resume` and `--resume-failed`. Owns the file format only; the scheduler decides what to log.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};

/// The header line GNU parallel writes at the top of a new joblog.
pub const HEADER: &str =
    "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n";

/// A joblog failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The joblog could not be opened, read or written.
    #[error("failed to access the joblog `{path}`")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A line of an existing joblog is not in GNU parallel's format (GNU: "Format of 'FILE' is wrong").
    #[error("the joblog `{path}` has a line that is not in the joblog format: `{line}`")]
    Format {
        /// The file.
        path: String,
        /// The offending line, without its newline.
        line: String,
    },
}

/// A result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One line of the joblog.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// `Seq`.
    pub seq: u64,
    /// `Host` (`:` for local).
    pub host: String,
    /// `Starttime`, seconds since the epoch.
    pub start: f64,
    /// `JobRuntime`, seconds.
    pub runtime: f64,
    /// `Send`, bytes.
    pub send: u64,
    /// `Receive`, bytes.
    pub receive: u64,
    /// `Exitval`.
    pub exitval: i32,
    /// `Signal`.
    pub signal: i32,
    /// `Command`.
    pub command: String,
}

impl Entry {
    /// The line as GNU parallel prints it: `Starttime` as `%.3f`, `JobRuntime` as `%10.3f`, newlines in the
    /// command written as NUL, and a final newline.
    pub fn to_line(&self) -> String {
        format!(
            "{}\t{}\t{:.3}\t{:10.3}\t{}\t{}\t{}\t{}\t{}\n",
            self.seq,
            self.host,
            self.start,
            self.runtime,
            self.send,
            self.receive,
            self.exitval,
            self.signal,
            self.command.replace('\n', "\0"),
        )
    }

    /// Parses one joblog line (without or with its newline); `None` for the header or a malformed line.
    pub fn parse(line: &str) -> Option<Entry> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let mut cols = line.splitn(9, '\t');
        let mut next = || cols.next();
        Some(Entry {
            seq: next()?.parse().ok()?,
            host: next()?.to_string(),
            start: next()?.trim().parse().ok()?,
            runtime: next()?.trim().parse().ok()?,
            send: next()?.parse().ok()?,
            receive: next()?.parse().ok()?,
            exitval: next()?.parse().ok()?,
            signal: next()?.parse().ok()?,
            command: next()?.replace('\0', "\n"),
        })
    }
}

/// Appends entries to a joblog.
pub struct Writer {
    out: Box<dyn Write + Send>,
    path: String,
}

impl Writer {
    /// Opens `spec` (`+FILE` appends; otherwise the file is truncated and the header written; `-` is stdout).
    pub fn open(spec: &str) -> Result<Writer> {
        match spec.strip_prefix('+') {
            Some(path) => Writer::open_file(path, true),
            None => Writer::open_file(spec, false),
        }
    }

    /// Opens `spec` after [`read_resume`]: GNU appends (no second header) when the old joblog had a first line,
    /// and starts a new file with a header otherwise.
    pub fn open_resuming(spec: &str, resume: &Resume) -> Result<Writer> {
        let path = spec.strip_prefix('+').unwrap_or(spec);
        Writer::open_file(path, resume.had_header)
    }

    fn open_file(path: &str, append: bool) -> Result<Writer> {
        let io_err = |source| Error::Io {
            path: path.to_string(),
            source,
        };
        let out: Box<dyn Write + Send> = if path == "-" && !append {
            Box::new(std::io::stdout())
        } else if append {
            Box::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(io_err)?,
            )
        } else {
            Box::new(File::create(path).map_err(io_err)?)
        };
        let mut writer = Writer {
            out,
            path: path.to_string(),
        };
        if !append {
            writer.put(HEADER)?;
        }
        Ok(writer)
    }

    /// Writes one entry and flushes it.
    pub fn write(&mut self, entry: &Entry) -> Result<()> {
        self.put(&entry.to_line())
    }

    fn put(&mut self, text: &str) -> Result<()> {
        let result = self
            .out
            .write_all(text.as_bytes())
            .and_then(|()| self.out.flush());
        result.map_err(|source| Error::Io {
            path: self.path.clone(),
            source,
        })
    }
}

/// What an existing joblog says about which jobs to skip.
#[derive(Debug, Default)]
pub struct Resume {
    /// Sequence numbers that must not run again.
    pub skip: HashSet<u64>,
    /// Lines that marked a job as done (GNU counts them as completed jobs, duplicates included).
    pub completed: u64,
    /// The joblog existed and had a first line (taken as the header, as GNU does): append to it.
    pub had_header: bool,
}

/// Reads `path` for `--resume` (skip every logged job) or `--resume-failed` (skip only the ones that succeeded).
///
/// GNU's rules: a missing file means nothing to skip; the first line is taken as the header without looking at
/// it; with `--resume` every line that starts with a number skips that job; with `--resume-failed` only lines
/// whose `Exitval` and `Signal` are both 0 do; any other line must look like a joblog line, or it is an error.
/// A leading `+` (append) is ignored.
pub fn read_resume(path: &str, failed_too: bool) -> Result<Resume> {
    let path = path.strip_prefix('+').unwrap_or(path);
    let io_err = |source| Error::Io {
        path: path.to_string(),
        source,
    };
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Resume::default()),
        Err(e) => return Err(io_err(e)),
    };
    let mut reader = BufReader::new(file);
    let mut resume = Resume::default();
    let mut line = Vec::new();
    resume.had_header = reader.read_until(b'\n', &mut line).map_err(io_err)? > 0;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(io_err)? == 0 {
            return Ok(resume);
        }
        let text = String::from_utf8_lossy(&line);
        let done = if failed_too {
            succeeded_seq(&text)
        } else {
            leading_seq(&text)
        };
        match done {
            Some(seq) => {
                resume.skip.insert(seq);
                resume.completed += 1;
            }
            None if looks_like_joblog_line(&text) => {}
            None => {
                let line = text.trim_end_matches('\n').to_string();
                return Err(Error::Format {
                    path: path.to_string(),
                    line,
                });
            }
        }
    }
}

/// `^(\d+)`: the number a line starts with.
fn leading_seq(line: &str) -> Option<u64> {
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    // GNU uses `$1||0`: a number too large for it is still a job number; kb saturates.
    (digits > 0).then(|| line[..digits].parse().unwrap_or(u64::MAX))
}

/// `^(\d+)(?:\t[^\t]+){5}\t0\t0\t`: a job that ended with exit value 0 and no signal.
fn succeeded_seq(line: &str) -> Option<u64> {
    let seq = leading_seq(line)?;
    let cols: Vec<&str> = line.splitn(9, '\t').collect();
    let ok = cols.len() == 9
        && line.bytes().take_while(u8::is_ascii_digit).count() == cols[0].len()
        && cols[1..6].iter().all(|c| !c.is_empty())
        && cols[6] == "0"
        && cols[7] == "0";
    ok.then_some(seq)
}

/// GNU's unanchored `\d+\s+[^\s]+\s+([-0-9.]+\s+){6}`, on whitespace-separated words.
fn looks_like_joblog_line(line: &str) -> bool {
    let words: Vec<&str> = line.split_ascii_whitespace().collect();
    // The last word only counts as followed by whitespace when the line goes on after it (its newline counts).
    let ends_in_space = line.ends_with(|c: char| c.is_ascii_whitespace());
    let numeric = |w: &str| {
        w.bytes()
            .all(|b| b.is_ascii_digit() || b == b'-' || b == b'.')
    };
    (0..words.len()).any(|i| {
        let end = i + 8;
        words[i].ends_with(|c: char| c.is_ascii_digit())
            && end <= words.len()
            && (end < words.len() || ends_in_space)
            && words[i + 2..end].iter().all(|w| numeric(w))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, exitval: i32, signal: i32, command: &str) -> Entry {
        Entry {
            seq,
            host: ":".into(),
            start: 1795392054.8244,
            runtime: 0.0091,
            send: 0,
            receive: 2,
            exitval,
            signal,
            command: command.into(),
        }
    }

    /// Copied from a GNU parallel 20221122 joblog (`--joblog jl 'echo {}; exit {}' ::: 1`).
    const GNU_LINE: &str = "2\t:\t1795392054.836\t     0.009\t0\t2\t1\t0\techo 1; exit 1\n";

    #[test]
    fn line_format_matches_gnu() {
        let mut e = entry(2, 1, 0, "echo 1; exit 1");
        e.start = 1795392054.836;
        assert_eq!(e.to_line(), GNU_LINE);
        assert_eq!(
            entry(1, -1, 15, "sleep 3").to_line(),
            "1\t:\t1795392054.824\t     0.009\t0\t2\t-1\t15\tsleep 3\n"
        );
        assert_eq!(
            entry(1, 0, 0, "printf 'a\nb'")
                .to_line()
                .matches('\0')
                .count(),
            1
        );
        let mut long = entry(1, 0, 0, "x");
        long.runtime = 12345678.5;
        assert!(long.to_line().contains("\t12345678.500\t"));
    }

    #[test]
    fn parse_round_trips() {
        let parsed = Entry::parse(GNU_LINE).unwrap();
        assert_eq!((parsed.seq, parsed.exitval, parsed.runtime), (2, 1, 0.009));
        assert_eq!(parsed.command, "echo 1; exit 1");
        assert!(Entry::parse(HEADER).is_none());
        let e = entry(3, 0, 0, "a\tb\nc");
        assert_eq!(Entry::parse(&e.to_line()).unwrap().command, "a\tb\nc");
    }

    #[test]
    fn writer_truncates_with_header_or_appends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log").display().to_string();
        let mut w = Writer::open(&path).unwrap();
        w.write(&entry(1, 0, 0, "a")).unwrap();
        drop(w);
        let mut w = Writer::open(&format!("+{path}")).unwrap();
        w.write(&entry(2, 0, 0, "b")).unwrap();
        drop(w);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.matches("Seq\t").count(), 1);
        assert_eq!(text.lines().count(), 3);
        Writer::open(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), HEADER);
    }

    fn joblog(lines: &[String]) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log").display().to_string();
        std::fs::write(&path, lines.concat()).unwrap();
        (dir, path)
    }

    #[test]
    fn resume_skips_every_logged_job() {
        let lines = [
            HEADER.into(),
            entry(1, 0, 0, "a").to_line(),
            entry(3, 2, 0, "c").to_line(),
        ];
        let (_dir, path) = joblog(&lines);
        let r = read_resume(&path, false).unwrap();
        assert_eq!(r.skip, HashSet::from([1, 3]));
        assert_eq!(r.completed, 2);
        assert!(r.had_header);
    }

    #[test]
    fn resume_failed_skips_only_successes() {
        let lines = [
            HEADER.into(),
            entry(1, 0, 0, "a").to_line(),
            entry(2, 1, 0, "b").to_line(),
            entry(3, -1, 15, "c").to_line(),
            entry(4, 0, 9, "d").to_line(),
        ];
        let (_dir, path) = joblog(&lines);
        let r = read_resume(&format!("+{path}"), true).unwrap();
        assert_eq!(r.skip, HashSet::from([1]));
    }

    #[test]
    fn resume_edge_cases_follow_gnu() {
        let r = read_resume("/nonexistent/kb-joblog", false).unwrap();
        assert!(r.skip.is_empty() && !r.had_header);
        // The first line is the header whatever it says.
        let (_dir, path) = joblog(&[entry(1, 0, 0, "a").to_line(), entry(2, 0, 0, "b").to_line()]);
        assert_eq!(read_resume(&path, false).unwrap().skip, HashSet::from([2]));
        let (_dir, path) = joblog(&[HEADER.into(), "garbage line\n".into()]);
        let err = read_resume(&path, true).unwrap_err();
        assert!(
            matches!(err, Error::Format { ref line, .. } if line == "garbage line"),
            "{err:?}"
        );
        // --resume only looks at the leading number.
        assert_eq!(
            read_resume(&path, false)
                .map_err(|e| e.to_string())
                .unwrap_err(),
            err.to_string()
        );
        let (_dir, path) = joblog(&[HEADER.into(), "7 junk\n".into()]);
        assert_eq!(read_resume(&path, false).unwrap().skip, HashSet::from([7]));
    }

    #[test]
    fn resumed_writer_appends_without_a_second_header() {
        let (_dir, path) = joblog(&[HEADER.into(), entry(1, 0, 0, "a").to_line()]);
        let r = read_resume(&path, false).unwrap();
        Writer::open_resuming(&path, &r)
            .unwrap()
            .write(&entry(2, 0, 0, "b"))
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.matches("Seq\t").count(), 1);
        assert_eq!(text.lines().count(), 3);
        let (_dir, path) = joblog(&[]);
        let r = read_resume(&path, false).unwrap();
        Writer::open_resuming(&path, &r).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), HEADER);
    }
}
