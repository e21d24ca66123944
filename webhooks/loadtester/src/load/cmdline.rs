//! Splitting a task's command line into words the way `sh` would, for the in-process `hey`
//! and `ghz`. Anything that needs a real shell (pipes, `&&`, redirects, `$VAR`, command
//! substitution) is reported, so the command is never run with a meaning `sh` would not give it.

/// A command line split into words.
#[derive(Debug, PartialEq, Eq)]
pub struct Words {
    /// The words, with quotes and backslashes removed.
    pub words: Vec<String>,
    /// The line uses shell syntax (operators, expansions, comments) that only a shell runs.
    pub needs_shell: bool,
}

/// Splits `line` into words: single quotes keep everything, double quotes keep everything but
/// `\"`, `\\`, `\$` and `` \` `` escapes, a backslash outside quotes escapes the next character.
pub fn split(line: &str) -> Result<Words, String> {
    let mut words = Vec::new();
    let mut needs_shell = false;
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("unterminated single quote".to_string()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(e @ ('"' | '\\' | '$' | '`')) => word.push(e),
                            Some('\n') => {}
                            Some(other) => {
                                word.push('\\');
                                word.push(other);
                            }
                            None => return Err("unterminated double quote".to_string()),
                        },
                        Some(c @ ('$' | '`')) => {
                            needs_shell = true;
                            word.push(c);
                        }
                        Some(c) => word.push(c),
                        None => return Err("unterminated double quote".to_string()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') => {}
                    Some(e) => word.push(e),
                    None => return Err("trailing backslash".to_string()),
                }
            }
            '|' | '&' | ';' | '<' | '>' | '(' | ')' | '$' | '`' | '\n' => {
                needs_shell = true;
                in_word = true;
                word.push(c);
            }
            '#' if !in_word => {
                needs_shell = true;
                in_word = true;
                word.push(c);
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(Words { words, needs_shell })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        let w = split(line).unwrap();
        assert!(!w.needs_shell, "{line}");
        w.words
    }

    #[test]
    fn splits_like_sh() {
        assert_eq!(
            words("hey -z 1m -q 10 -c 2 -H 'Cookie: type=insider' http://podinfo.test/"),
            [
                "hey",
                "-z",
                "1m",
                "-q",
                "10",
                "-c",
                "2",
                "-H",
                "Cookie: type=insider",
                "http://podinfo.test/"
            ]
        );
        assert_eq!(
            words(r##"ghz -d "{\"service\":\"\"}" a\ b x"'y'""##),
            ["ghz", "-d", r#"{"service":""}"#, "a b", "x'y'"]
        );
        assert_eq!(words("  a   b\t"), ["a", "b"]);
        assert_eq!(words("a '' b"), ["a", "", "b"]);
        assert_eq!(words("http://x/?a=b*"), ["http://x/?a=b*"]);
    }

    #[test]
    fn reports_shell_syntax() {
        for line in [
            "hey http://a/ | tee out",
            "hey http://a/ && echo ok",
            "hey http://a/?x=1&y=2",
            "hey $URL",
            "hey \"$URL\"",
            "hey `cat url`",
            "hey http://a/ > out",
            "hey http://a/ # comment",
            "hey http://a/\necho",
        ] {
            assert!(split(line).unwrap().needs_shell, "{line}");
        }
        assert!(!split("hey 'a|b' \"c&d\" e#f").unwrap().needs_shell);
    }

    #[test]
    fn refuses_unterminated_quotes() {
        assert!(split("hey 'abc").is_err());
        assert!(split("hey \"abc").is_err());
        assert!(split("hey abc\\").is_err());
    }
}
