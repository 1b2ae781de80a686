//! Combining sources into records as GNU parallel does: linked sources (`:::+`, `::::+`) are paired element-wise
//! and stop with the shortest; unlinked groups form a cartesian product, the first slowest. The first group is
//! streamed (constant memory); the others are read lazily and kept, because every value of the first group pairs
//! with all of them.

use std::fs::File;
use std::path::Path;

use super::reader::ItemReader;
use super::spec::{Error, InputSpec, Result, Separator, Source};

/// GNU's warning when the first three values end in CR-NL and no `-d` was given.
const CRLF_WARNING: &str = "The first three values end in CR-NL. Consider using -d \"\\r\\n\"";

/// One source being read.
struct Member {
    reader: ItemReader,
    /// The file name for errors (`-` for stdin).
    path: String,
    /// The first value, read ahead to tell an empty source from a non-empty one.
    peeked: Option<String>,
    /// Values handed out so far (counting the peeked one).
    count: u64,
    eof: bool,
}

impl Member {
    fn open(source: &Source, spec: &InputSpec) -> Result<Member> {
        let separator = &spec.separator;
        let (reader, path) = match source {
            Source::Stdin => (
                ItemReader::new(std::io::stdin(), separator),
                "-".to_string(),
            ),
            Source::File(path) if path == Path::new("-") => (
                ItemReader::new(std::io::stdin(), separator),
                "-".to_string(),
            ),
            Source::File(path) => {
                let name = path.display().to_string();
                let file = File::open(path).map_err(|source| Error::Read {
                    path: name.clone(),
                    source,
                })?;
                (ItemReader::new(file, separator), name)
            }
            Source::Args(values) => {
                // GNU writes `:::` values to a file, each followed by the separator, and reads them back: a value
                // that contains the separator becomes several values. Do the same, in memory.
                let mut bytes = Vec::new();
                for value in values {
                    bytes.extend_from_slice(value.as_bytes());
                    bytes.extend_from_slice(separator.as_bytes());
                }
                (
                    ItemReader::new(std::io::Cursor::new(bytes), separator),
                    ":::".to_string(),
                )
            }
        };
        let reader = reader.with_eof(spec.eof.as_deref()).with_trim(spec.trim);
        Ok(Member {
            reader,
            path,
            peeked: None,
            count: 0,
            eof: false,
        })
    }

    fn read(&mut self, crlf: &mut CrlfCheck) -> Result<Option<String>> {
        if self.eof {
            return Ok(None);
        }
        match self.reader.next_item() {
            Ok(Some(item)) => {
                crlf.record(item.ends_in_cr);
                self.count += 1;
                Ok(Some(item.value))
            }
            Ok(None) => {
                self.eof = true;
                Ok(None)
            }
            Err(source) => Err(Error::Read {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// The next value; an empty source gives one empty value (GNU fills it with `Arg->new("")`).
    fn next_value(&mut self, crlf: &mut CrlfCheck) -> Result<Option<String>> {
        if let Some(value) = self.peeked.take() {
            return Ok(Some(value));
        }
        match self.read(crlf)? {
            None if self.count == 0 => {
                self.count = 1;
                Ok(Some(String::new()))
            }
            other => Ok(other),
        }
    }
}

/// Sources linked together, read as tuples; kept in memory unless it is the first group.
struct Group {
    members: Vec<Member>,
    tuples: Vec<Vec<String>>,
    complete: bool,
}

impl Group {
    fn next_tuple(&mut self, crlf: &mut CrlfCheck) -> Result<Option<Vec<String>>> {
        let mut tuple = Vec::with_capacity(self.members.len());
        for member in &mut self.members {
            match member.next_value(crlf)? {
                Some(value) => tuple.push(value),
                None => return Ok(None),
            }
        }
        Ok(Some(tuple))
    }

    /// The tuple at `index`, reading as far as needed.
    fn has(&mut self, index: usize, crlf: &mut CrlfCheck) -> Result<bool> {
        while self.tuples.len() <= index && !self.complete {
            match self.next_tuple(crlf)? {
                Some(tuple) => self.tuples.push(tuple),
                None => self.complete = true,
            }
        }
        Ok(index < self.tuples.len())
    }
}

/// GNU's CR-NL detection: it looks at the first three values read (from any source) when `-d` is not given.
struct CrlfCheck {
    enabled: bool,
    cr: u32,
    lf: u32,
    warned: bool,
}

impl CrlfCheck {
    fn record(&mut self, ends_in_cr: bool) {
        if !self.enabled || self.cr == 3 || self.lf == 3 {
            return;
        }
        if ends_in_cr {
            self.cr += 1
        } else {
            self.lf += 1
        }
    }

    fn warning(&mut self) -> Option<&'static str> {
        if self.cr == 3 && self.lf == 0 && !self.warned {
            self.warned = true;
            return Some(CRLF_WARNING);
        }
        None
    }
}

/// The records of a run: one value per (combined) source, in GNU parallel's order.
pub struct Inputs {
    groups: Vec<Group>,
    /// The current tuple of the first group.
    head: Option<Vec<String>>,
    /// The position in each later group (index 0 unused).
    positions: Vec<usize>,
    started: bool,
    done: bool,
    crlf: CrlfCheck,
    warnings: Vec<String>,
}

impl Inputs {
    /// Opens the sources; stdin is used when `spec.sources` is empty. Files are opened now (so a missing file is
    /// an error before any job runs); nothing is read until the first record is asked for.
    pub fn open(mut spec: InputSpec) -> Result<Inputs> {
        let sources = if spec.sources.is_empty() {
            vec![(Source::Stdin, false)]
        } else {
            std::mem::take(&mut spec.sources)
        };
        let mut groups: Vec<Group> = Vec::new();
        for (source, linked) in &sources {
            let member = Member::open(source, &spec)?;
            match groups.last_mut() {
                Some(group) if *linked => group.members.push(member),
                _ => groups.push(Group {
                    members: vec![member],
                    tuples: Vec::new(),
                    complete: false,
                }),
            }
        }
        let crlf = CrlfCheck {
            enabled: !matches!(spec.separator, Separator::Delimiter(_)),
            cr: 0,
            lf: 0,
            warned: false,
        };
        let positions = vec![0; groups.len()];
        Ok(Inputs {
            groups,
            head: None,
            positions,
            started: false,
            done: false,
            crlf,
            warnings: Vec::new(),
        })
    }

    /// Warnings GNU parallel would print while reading (without its `parallel: Warning: ` prefix), taken once.
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// Reads the first value of every source: when all are empty there are no jobs at all.
    fn start(&mut self) -> Result<bool> {
        let mut any = false;
        for group in &mut self.groups {
            for member in &mut group.members {
                member.peeked = member.read(&mut self.crlf)?;
                any |= member.peeked.is_some();
            }
        }
        Ok(any)
    }

    fn next_record(&mut self) -> Result<Option<Vec<String>>> {
        if !self.started {
            self.started = true;
            if !self.start()? {
                return Ok(None);
            }
        }
        if self.groups.len() == 1 {
            return self.groups[0].next_tuple(&mut self.crlf);
        }
        if self.head.is_some() && self.advance()? {
            return Ok(Some(self.build()));
        }
        self.head = self.groups[0].next_tuple(&mut self.crlf)?;
        if self.head.is_none() {
            return Ok(None);
        }
        self.positions.fill(0);
        for k in 1..self.groups.len() {
            if !self.groups[k].has(0, &mut self.crlf)? {
                return Ok(None);
            }
        }
        Ok(Some(self.build()))
    }

    /// Moves to the next combination of the later groups, last fastest; false when they are all used up.
    fn advance(&mut self) -> Result<bool> {
        for k in (1..self.groups.len()).rev() {
            self.positions[k] += 1;
            if self.groups[k].has(self.positions[k], &mut self.crlf)? {
                return Ok(true);
            }
            self.positions[k] = 0;
        }
        Ok(false)
    }

    fn build(&self) -> Vec<String> {
        let mut record: Vec<String> = self.head.clone().unwrap_or_default();
        for (k, group) in self.groups.iter().enumerate().skip(1) {
            record.extend(group.tuples[self.positions[k]].iter().cloned());
        }
        record
    }
}

impl Iterator for Inputs {
    type Item = Result<Vec<String>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let record = self.next_record();
        if let Some(warning) = self.crlf.warning() {
            self.warnings.push(warning.to_string());
        }
        match record {
            Ok(Some(record)) => Some(Ok(record)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
#[path = "combine_tests.rs"]
mod tests;
