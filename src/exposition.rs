//! The Prometheus text format (0.0.4), written family by family: `# HELP` and `# TYPE`, then the
//! family's samples, as the format requires (a parser that reads the comments as the start of a
//! family loses the types otherwise). Used by the sidecar's `--metrics-addr` and by `cache serve`.

use std::fmt::Write as _;

/// One metric family and its samples.
pub struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    samples: Vec<String>,
}

impl Family {
    pub fn new(name: &'static str, kind: &'static str, help: &'static str) -> Family {
        Family { name, kind, help, samples: Vec::new() }
    }

    /// Adds a sample; `labels` is the text between the braces, empty for none.
    pub fn sample(&mut self, labels: &str, value: impl std::fmt::Display) {
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        self.samples.push(format!("{}{braces} {value}", self.name));
    }
}

/// The exposition of `families`, each written whole.
pub fn render(families: &[Family]) -> String {
    let mut out = String::new();
    for family in families {
        let _ = writeln!(out, "# HELP {} {}\n# TYPE {} {}", family.name, family.help, family.name, family.kind);
        for sample in &family.samples {
            let _ = writeln!(out, "{sample}");
        }
    }
    out
}

/// A label value with `\`, `"` and newlines escaped.
pub fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_family_is_written_whole_with_escaped_labels() {
        let mut up = Family::new("x_up", "gauge", "1 while up");
        up.sample("", 1);
        let mut hits = Family::new("x_hits_total", "counter", "hits");
        hits.sample(&format!("who=\"{}\"", label("a\"b\\c")), 2);
        let text = render(&[up, hits]);
        assert_eq!(
            text,
            "# HELP x_up 1 while up\n# TYPE x_up gauge\nx_up 1\n# HELP x_hits_total hits\n# TYPE x_hits_total counter\nx_hits_total{who=\"a\\\"b\\\\c\"} 2\n"
        );
    }
}
