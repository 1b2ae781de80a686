//! Kubernetes quantities (`500m`, `2`, `4Gi`, `1e9`) for `--cpu` and `--mem`: parsing, so that a bad value fails
//! before anything is created, and the check that a pod of that size fits on at least one node.

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::error::{Error, Result};

/// Parses a quantity into its value in base units (cores for CPU, bytes for memory).
pub fn parse(what: &'static str, value: &str) -> Result<f64> {
    let bad = |reason: &str| Error::BadQuantity {
        what,
        value: value.to_string(),
        reason: reason.to_string(),
    };
    let text = value.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    // `1e9` is a decimal exponent, not a suffix.
    let (number, suffix) = match suffix.strip_prefix(['e', 'E']) {
        Some(exp)
            if !exp.is_empty()
                && exp
                    .trim_start_matches(['+', '-'])
                    .chars()
                    .all(|c| c.is_ascii_digit()) =>
        {
            (text, "")
        }
        _ => (number, suffix),
    };
    if number.is_empty() {
        return Err(bad("it does not start with a number"));
    }
    let base: f64 = number
        .parse()
        .map_err(|_| bad("the number does not parse"))?;
    let factor = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        _ => {
            return Err(bad(&format!(
                "unknown suffix `{suffix}` (use m, k, M, G, T, Ki, Mi, Gi, Ti)"
            )));
        }
    };
    let total = base * factor;
    if !total.is_finite() || total <= 0.0 {
        return Err(bad("it must be greater than zero"));
    }
    Ok(total)
}

/// A CPU amount for messages: `0.5 cpu`, `1000 cpu`.
pub fn show_cpu(cores: f64) -> String {
    format!("{} cpu", trim_float(cores))
}

/// A memory amount for messages, in the largest binary unit that keeps it readable.
pub fn show_mem(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!(
        "{} {} memory",
        trim_float((value * 10.0).round() / 10.0),
        UNITS[unit]
    )
}

fn trim_float(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// What one node can hold.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeCapacity {
    /// The node's name.
    pub name: String,
    /// Allocatable cores.
    pub cpu: f64,
    /// Allocatable bytes.
    pub mem: f64,
}

/// The allocatable CPU and memory of each schedulable node.
pub fn capacities(nodes: &[Node]) -> Vec<NodeCapacity> {
    nodes
        .iter()
        .filter(|n| {
            !n.spec
                .as_ref()
                .and_then(|s| s.unschedulable)
                .unwrap_or(false)
        })
        .filter_map(|node| {
            let allocatable = node.status.as_ref()?.allocatable.as_ref()?;
            let get = |key: &str, what| {
                allocatable
                    .get(key)
                    .and_then(|Quantity(q)| parse(what, q).ok())
            };
            Some(NodeCapacity {
                name: node.metadata.name.clone().unwrap_or_default(),
                cpu: get("cpu", "cpu")?,
                mem: get("memory", "memory")?,
            })
        })
        .collect()
}

/// Checks that a pod asking for `cpu` cores and `mem` bytes fits on one of `nodes`; the error names the largest.
pub fn check_fits(cpu: f64, mem: f64, nodes: &[NodeCapacity]) -> Result<()> {
    if nodes.is_empty() || nodes.iter().any(|n| n.cpu >= cpu && n.mem >= mem) {
        return Ok(());
    }
    let by_cpu = nodes
        .iter()
        .max_by(|a, b| a.cpu.total_cmp(&b.cpu))
        .expect("nodes is not empty; this is a bug");
    let by_mem = nodes
        .iter()
        .max_by(|a, b| a.mem.total_cmp(&b.mem))
        .expect("nodes is not empty; this is a bug");
    let (node, asked, offers) = if nodes.iter().all(|n| n.cpu < cpu) {
        (by_cpu, show_cpu(cpu), show_cpu(by_cpu.cpu))
    } else if nodes.iter().all(|n| n.mem < mem) {
        (by_mem, show_mem(mem), show_mem(by_mem.mem))
    } else {
        (
            by_cpu,
            format!("{} and {}", show_cpu(cpu), show_mem(mem)),
            format!("{} and {}", show_cpu(by_cpu.cpu), show_mem(by_cpu.mem)),
        )
    };
    Err(Error::TooBig {
        asked,
        node: node.name.clone(),
        offers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quantities() {
        assert_eq!(parse("cpu", "500m").unwrap(), 0.5);
        assert_eq!(parse("cpu", "2").unwrap(), 2.0);
        assert_eq!(parse("cpu", "0.25").unwrap(), 0.25);
        assert_eq!(parse("cpu", "1000").unwrap(), 1000.0);
    }

    #[test]
    fn memory_quantities() {
        assert_eq!(parse("memory", "1Gi").unwrap(), 1024.0 * 1024.0 * 1024.0);
        assert_eq!(parse("memory", "512Mi").unwrap(), 512.0 * 1024.0 * 1024.0);
        assert_eq!(parse("memory", "1G").unwrap(), 1e9);
        assert_eq!(parse("memory", "1e9").unwrap(), 1e9);
        assert_eq!(parse("memory", "128974848").unwrap(), 128974848.0);
    }

    #[test]
    fn bad_quantities_say_why() {
        let err = parse("memory", "1x").unwrap_err();
        assert!(
            err.to_string().contains("invalid memory quantity `1x`"),
            "{err}"
        );
        assert!(err.to_string().contains("unknown suffix `x`"), "{err}");
        assert!(parse("cpu", "").is_err());
        assert!(parse("cpu", "abc").is_err());
        assert!(parse("cpu", "0").is_err());
        assert!(parse("cpu", "-1").is_err());
        assert!(err.hint().unwrap().contains("Gi"));
    }

    #[test]
    fn fits_or_names_the_largest_node() {
        let nodes = vec![
            NodeCapacity {
                name: "small".into(),
                cpu: 2.0,
                mem: 4e9,
            },
            NodeCapacity {
                name: "big".into(),
                cpu: 8.0,
                mem: 32e9,
            },
        ];
        check_fits(4.0, 8e9, &nodes).unwrap();
        let err = check_fits(1000.0, 1e9, &nodes).unwrap_err().to_string();
        assert_eq!(
            err,
            "no node can hold a pod asking for 1000 cpu: the largest node `big` offers 8 cpu"
        );
        let err = check_fits(1.0, 64.0 * 1024f64.powi(3), &nodes)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("64 GiB memory") && err.contains("`big`"),
            "{err}"
        );
        check_fits(1000.0, 1.0, &[]).unwrap();
    }

    #[test]
    fn display() {
        assert_eq!(show_cpu(0.5), "0.5 cpu");
        assert_eq!(show_mem(1536.0 * 1024.0 * 1024.0), "1.5 GiB memory");
    }
}
