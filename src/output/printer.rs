//! Job output in GNU parallel's modes: `--group` (a job's stdout then stderr when it ends), `--line-buffer` (whole
//! lines as they come), `--ungroup` (bytes as they come), each with `--tag`/`--tagstring` prefixes and `-k` order.
//!
//! Only the dispatcher calls this, so writes from different jobs never interleave within a line or a group.

use std::collections::BTreeMap;
use std::io::{self, Write};

use crate::model::Stream;

/// How output is grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Whole job output at its end (GNU's default).
    #[default]
    Group,
    /// Complete lines as they arrive.
    LineBuffer,
    /// Bytes as they arrive.
    Ungroup,
}

/// Output collected for one attempt of a job.
#[derive(Debug, Default)]
pub struct JobBuffer {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// The `--tag`/`--tagstring` prefix, without its tab.
    tag: Option<String>,
    /// Bytes received, for the joblog's `Receive` column.
    pub received: u64,
}

impl JobBuffer {
    /// A buffer for a job whose lines get `tag` and a tab in front.
    pub fn new(tag: Option<String>) -> Self {
        JobBuffer {
            tag,
            ..Default::default()
        }
    }

    fn stream(&mut self, stream: Stream) -> &mut Vec<u8> {
        match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        }
    }
}

/// Writes job output to stdout and stderr in the chosen mode and order (tests give it other writers).
pub struct Printer<O: Write = io::BufWriter<io::Stdout>, E: Write = io::Stderr> {
    mode: Mode,
    keep_order: bool,
    out: O,
    err: E,
    /// With `-k`: the next sequence number to print, and finished jobs waiting for it (`None`: nothing to print).
    next_seq: u64,
    waiting: BTreeMap<u64, Option<JobBuffer>>,
    /// `-v`: each job's command line is the first line of its stdout.
    echo_stdout: bool,
    /// `-t`/`--verbose`: each job's command line goes to stderr when it starts.
    echo_stderr: bool,
}

impl Printer {
    /// A printer writing to the process's stdout and stderr.
    pub fn new(mode: Mode, keep_order: bool) -> Self {
        Printer::to(
            mode,
            keep_order,
            io::BufWriter::with_capacity(64 * 1024, io::stdout()),
            io::stderr(),
        )
    }
}

impl<O: Write, E: Write> Printer<O, E> {
    /// A printer writing job stdout to `out` and job stderr to `err`.
    pub fn to(mode: Mode, keep_order: bool, out: O, err: E) -> Self {
        Printer {
            mode,
            keep_order,
            out,
            err,
            next_seq: 1,
            waiting: BTreeMap::new(),
            echo_stdout: false,
            echo_stderr: false,
        }
    }

    /// Echoes each job's command line as GNU parallel's `-v` (on the job's stdout, before its output: tagged,
    /// grouped and ordered with it) and `-t`/`--verbose` (on stderr as the job starts, untagged).
    pub fn with_echo(mut self, stdout: bool, stderr: bool) -> Self {
        self.echo_stdout = stdout;
        self.echo_stderr = stderr;
        self
    }

    /// Takes the start of an attempt running `command`: echoes it as [`Printer::with_echo`] says.
    pub fn started(&mut self, seq: u64, buf: &mut JobBuffer, command: &str) -> io::Result<()> {
        if self.echo_stderr {
            self.err.write_all(format!("{command}\n").as_bytes())?;
            self.err.flush()?;
        }
        if self.echo_stdout {
            // Not the job's output: the joblog's `Receive` does not count it.
            self.take(seq, buf, Stream::Stdout, format!("{command}\n").as_bytes())?;
        }
        Ok(())
    }

    /// The writers, for tests that read what was printed.
    pub fn into_writers(self) -> (O, E) {
        (self.out, self.err)
    }

    /// Takes a chunk of a running job's output; prints what the mode allows now and keeps the rest in `buf`.
    pub fn chunk(
        &mut self,
        seq: u64,
        buf: &mut JobBuffer,
        stream: Stream,
        data: &[u8],
    ) -> io::Result<()> {
        buf.received += data.len() as u64;
        self.take(seq, buf, stream, data)
    }

    /// Prints what the mode allows of `data` now and keeps the rest in `buf`.
    fn take(
        &mut self,
        seq: u64,
        buf: &mut JobBuffer,
        stream: Stream,
        data: &[u8],
    ) -> io::Result<()> {
        let live = match self.mode {
            Mode::Group => false,
            Mode::Ungroup => true,
            // With -k, only the oldest job may print live (GNU prints the others when their turn comes).
            Mode::LineBuffer => !self.keep_order || seq == self.next_seq,
        };
        if !live {
            buf.stream(stream).extend_from_slice(data);
            return Ok(());
        }
        if self.mode == Mode::Ungroup {
            return self.write(stream, buf.tag.as_deref(), data, true);
        }
        let pending = buf.stream(stream);
        pending.extend_from_slice(data);
        let Some(last_nl) = memchr::memrchr(b'\n', pending) else {
            return Ok(());
        };
        let rest = pending.split_off(last_nl + 1);
        let lines = std::mem::replace(pending, rest);
        self.write(stream, buf.tag.as_deref(), &lines, true)
    }

    /// Takes a job's final attempt; prints it now, or when its turn comes with `-k`.
    pub fn finish(&mut self, seq: u64, buf: JobBuffer) -> io::Result<()> {
        if !self.keep_order {
            return self.emit(buf);
        }
        self.waiting.insert(seq, Some(buf));
        self.drain()
    }

    /// Marks `seq` as done with nothing to print (skipped by `--resume`), so `-k` does not wait for it.
    pub fn skip(&mut self, seq: u64) -> io::Result<()> {
        if self.keep_order {
            self.waiting.insert(seq, None);
            self.drain()?;
        }
        Ok(())
    }

    /// Flushes stdout.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn drain(&mut self) -> io::Result<()> {
        while let Some(entry) = self.waiting.remove(&self.next_seq) {
            self.next_seq += 1;
            if let Some(buf) = entry {
                self.emit(buf)?;
            }
        }
        Ok(())
    }

    fn emit(&mut self, buf: JobBuffer) -> io::Result<()> {
        let tag = buf.tag.as_deref();
        self.write(Stream::Stdout, tag, &buf.stdout, false)?;
        self.write(Stream::Stderr, tag, &buf.stderr, false)?;
        self.out.flush()
    }

    fn write(
        &mut self,
        stream: Stream,
        tag: Option<&str>,
        data: &[u8],
        flush: bool,
    ) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let w: &mut dyn Write = match stream {
            Stream::Stdout => &mut self.out,
            Stream::Stderr => &mut self.err,
        };
        match tag {
            None => w.write_all(data)?,
            Some(tag) => {
                for line in data.split_inclusive(|&b| b == b'\n') {
                    w.write_all(tag.as_bytes())?;
                    w.write_all(b"\t")?;
                    w.write_all(line)?;
                }
            }
        }
        if flush || stream == Stream::Stderr {
            self.out.flush()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(mode: Mode, stdout: bool, stderr: bool, tag: Option<&str>) -> (String, String) {
        let mut p = Printer::to(mode, true, Vec::new(), Vec::new()).with_echo(stdout, stderr);
        let mut buf = JobBuffer::new(tag.map(str::to_string));
        p.started(1, &mut buf, "echo 'a b'").unwrap();
        p.chunk(1, &mut buf, Stream::Stdout, b"a b\n").unwrap();
        assert_eq!(buf.received, 4, "the echo is not job output");
        p.finish(1, buf).unwrap();
        let (out, err) = p.into_writers();
        (
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn v_prints_the_command_line_before_the_output_and_tagged() {
        assert_eq!(run(Mode::Group, true, false, None).0, "echo 'a b'\na b\n");
        assert_eq!(
            run(Mode::Group, true, false, Some("x")).0,
            "x\techo 'a b'\nx\ta b\n"
        );
        assert_eq!(run(Mode::Ungroup, true, false, None).0, "echo 'a b'\na b\n");
    }

    #[test]
    fn t_prints_the_command_line_on_stderr_untagged() {
        let (out, err) = run(Mode::Group, false, true, Some("x"));
        assert_eq!(out, "x\ta b\n");
        assert_eq!(err, "echo 'a b'\n");
    }

    #[test]
    fn no_echo_by_default() {
        assert_eq!(
            run(Mode::LineBuffer, false, false, None),
            ("a b\n".into(), String::new())
        );
    }
}
