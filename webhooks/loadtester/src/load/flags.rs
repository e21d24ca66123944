//! A small command-line flag parser for the `hey` (Go `flag` package) and `ghz` (kingpin)
//! syntaxes: `-x value`, `-x=value`, `--name value`, `--name=value`; boolean flags take no
//! value (or `=true`/`=false`).

use std::collections::BTreeMap;

/// One accepted flag.
#[derive(Debug, Clone, Copy)]
pub struct Flag {
    /// Every spelling (without dashes); the first is the canonical name.
    pub names: &'static [&'static str],
    /// Whether the flag is a boolean (takes no separate value).
    pub boolean: bool,
}

/// Parsed flags: canonical name → values in order (booleans hold `true`/`false`).
#[derive(Debug, Default)]
pub struct Parsed {
    /// Values per canonical flag name.
    pub values: BTreeMap<&'static str, Vec<String>>,
    /// Arguments that are not flags.
    pub positional: Vec<String>,
}

/// Parses `args` (without the program name). With `interspersed` false (Go's `flag`), parsing
/// stops at the first argument that is not a flag; otherwise flags and positionals may mix.
pub fn parse(
    tool: &str,
    spec: &[Flag],
    args: &[String],
    interspersed: bool,
) -> Result<Parsed, String> {
    let mut out = Parsed::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            out.positional.extend(args[i..].iter().cloned());
            break;
        }
        let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            out.positional.push(arg.clone());
            if interspersed {
                continue;
            }
            out.positional.extend(args[i..].iter().cloned());
            break;
        };
        if body.is_empty() {
            out.positional.push(arg.clone());
            continue;
        }
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let flag = spec
            .iter()
            .find(|f| f.names.contains(&name))
            .ok_or_else(|| format!("{tool}: unknown flag {arg:?}"))?;
        let value = if flag.boolean {
            match inline.as_deref() {
                None | Some("true") | Some("1") => "true".to_string(),
                Some("false") | Some("0") => "false".to_string(),
                Some(v) => return Err(format!("{tool}: flag -{name} is a switch, not {v:?}")),
            }
        } else if let Some(v) = inline {
            v
        } else {
            let v = args
                .get(i)
                .ok_or_else(|| format!("{tool}: flag {arg} needs a value"))?;
            i += 1;
            v.clone()
        };
        out.values.entry(flag.names[0]).or_default().push(value);
    }
    Ok(out)
}

// === impl Parsed ===

impl Parsed {
    /// The last value of a flag.
    pub fn last(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .and_then(|v| v.last())
            .map(String::as_str)
    }

    /// Every value of a repeatable flag.
    pub fn all(&self, name: &str) -> &[String] {
        self.values.get(name).map(Vec::as_slice).unwrap_or_default()
    }

    /// Whether a boolean flag is set.
    pub fn is_set(&self, name: &str) -> bool {
        self.last(name) == Some("true")
    }

    /// A flag parsed as `T`, or `default`.
    pub fn number<T: std::str::FromStr>(
        &self,
        tool: &str,
        name: &str,
        default: T,
    ) -> Result<T, String> {
        match self.last(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("{tool}: flag -{name}: invalid number {v:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &[Flag] = &[
        Flag {
            names: &["z", "duration"],
            boolean: false,
        },
        Flag {
            names: &["H"],
            boolean: false,
        },
        Flag {
            names: &["insecure"],
            boolean: true,
        },
    ];

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn parses_both_syntaxes() {
        let p = parse(
            "hey",
            SPEC,
            &args(&["-z", "1m", "--H=a: b", "-H", "c: d", "--insecure", "url"]),
            false,
        )
        .unwrap();
        assert_eq!(p.last("z"), Some("1m"));
        assert_eq!(p.all("H"), ["a: b", "c: d"]);
        assert!(p.is_set("insecure"));
        assert_eq!(p.positional, ["url"]);
        let p = parse(
            "ghz",
            SPEC,
            &args(&["host:1", "--duration=2s", "-insecure=false"]),
            true,
        )
        .unwrap();
        assert_eq!(p.last("z"), Some("2s"));
        assert!(!p.is_set("insecure"));
        assert_eq!(p.positional, ["host:1"]);
    }

    #[test]
    fn go_flag_stops_at_first_positional() {
        let p = parse("hey", SPEC, &args(&["url", "-z", "1s"]), false).unwrap();
        assert_eq!(p.positional, ["url", "-z", "1s"]);
    }

    #[test]
    fn names_unknown_flags_and_missing_values() {
        let e = parse("hey", SPEC, &args(&["-x", "1", "url"]), false).unwrap_err();
        assert!(e.contains("unknown flag \"-x\""), "{e}");
        let e = parse("hey", SPEC, &args(&["-z"]), false).unwrap_err();
        assert!(e.contains("needs a value"), "{e}");
    }
}
