//! How `setup` talks to the user: the [`Ask`] trait (show text, read a line, read a secret),
//! its terminal implementation, and the question shapes built on it (free text with a default,
//! a choice among named options, yes/no). The interview only sees the trait, so unit tests drive
//! it with a script instead of a terminal.

use std::io::{self, BufRead, Write};

use secrecy::SecretString;

/// The three things a question needs from the user's side.
pub trait Ask {
    /// Shows text (instructions, notes, warnings).
    fn say(&mut self, text: &str);
    /// Shows `prompt` and returns the line typed, without its line ending.
    fn line(&mut self, prompt: &str) -> io::Result<String>;
    /// Shows `prompt` and reads a secret; what is typed is not shown.
    fn secret(&mut self, prompt: &str) -> io::Result<SecretString>;
}

/// The terminal: prompts and text on stderr (stdout carries only the final snippets), answers
/// from stdin, secrets without echo when stdin is a terminal.
pub struct Terminal;

impl Ask for Terminal {
    fn say(&mut self, text: &str) {
        eprintln!("{text}");
    }

    fn line(&mut self, prompt: &str) -> io::Result<String> {
        eprint!("{prompt}");
        let _ = io::stderr().flush();
        let mut line = String::new();
        if io::stdin().lock().read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "standard input ended before all questions were answered",
            ));
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    }

    fn secret(&mut self, prompt: &str) -> io::Result<SecretString> {
        crate::terminal::read_password(prompt)
    }
}

/// Wrong answers in a row before `setup` gives up (a script feeding wrong answers must end).
const TRIES: usize = 5;

fn too_many() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "too many answers that could not be used",
    )
}

/// Asks `question` until `check` accepts the answer; an empty answer means `default` (when there
/// is one). `check` gets the trimmed answer and returns the value or what is wrong with it.
pub fn text<T>(
    ask: &mut dyn Ask,
    question: &str,
    default: Option<&str>,
    check: impl Fn(&str) -> Result<T, String>,
) -> io::Result<T> {
    let prompt = match default {
        Some(d) if !d.is_empty() => format!("{question} [{d}]: "),
        _ => format!("{question}: "),
    };
    for _ in 0..TRIES {
        let answer = ask.line(&prompt)?;
        let answer = match (answer.trim(), default) {
            ("", Some(d)) => d.to_string(),
            (a, _) => a.to_string(),
        };
        match check(&answer) {
            Ok(value) => return Ok(value),
            Err(why) => ask.say(&format!("  {why}")),
        }
    }
    Err(too_many())
}

/// One option of a [`choose`] question.
pub struct Choice<T> {
    pub name: &'static str,
    pub help: String,
    pub value: T,
}

/// Lists the options and asks for one by name (a unique prefix, or its number, will do).
pub fn choose<T: Clone>(
    ask: &mut dyn Ask,
    question: &str,
    options: &[Choice<T>],
    default: Option<&'static str>,
) -> io::Result<T> {
    let mut listing = question.to_string();
    for (i, c) in options.iter().enumerate() {
        listing.push_str(&format!("\n  {}) {:<12} {}", i + 1, c.name, c.help));
    }
    ask.say(&listing);
    let names: Vec<&str> = options.iter().map(|c| c.name).collect();
    let index = text(
        ask,
        &format!("Choose {}", names.join(" / ")),
        default,
        |a| pick(&names, a),
    )?;
    Ok(options[index].value.clone())
}

/// The option `answer` names: its number, its name, or a prefix of exactly one name.
fn pick(names: &[&str], answer: &str) -> Result<usize, String> {
    let answer = answer.to_ascii_lowercase();
    if let Ok(n) = answer.parse::<usize>()
        && (1..=names.len()).contains(&n)
    {
        return Ok(n - 1);
    }
    if let Some(i) = names.iter().position(|n| *n == answer) {
        return Ok(i);
    }
    let matching: Vec<usize> = (0..names.len())
        .filter(|&i| !answer.is_empty() && names[i].starts_with(&answer))
        .collect();
    match matching[..] {
        [i] => Ok(i),
        _ => Err(format!("please answer one of: {}", names.join(", "))),
    }
}

/// A yes/no question.
pub fn yes_no(ask: &mut dyn Ask, question: &str, default: bool) -> io::Result<bool> {
    let hint = if default { "Y/n" } else { "y/N" };
    for _ in 0..TRIES {
        let answer = ask.line(&format!("{question} [{hint}]: "))?;
        match answer.trim().to_ascii_lowercase().as_str() {
            "" => return Ok(default),
            "y" | "yes" => return Ok(true),
            "n" | "no" => return Ok(false),
            _ => ask.say("  please answer yes or no"),
        }
    }
    Err(too_many())
}

/// Answers from a list, for tests: lines and secrets are taken in order; everything shown is kept.
#[cfg(test)]
pub struct Script {
    answers: std::collections::VecDeque<String>,
    pub shown: String,
}

#[cfg(test)]
impl Script {
    pub fn new(answers: &[&str]) -> Script {
        Script {
            answers: answers.iter().map(|s| s.to_string()).collect(),
            shown: String::new(),
        }
    }

    /// True when every answer was used.
    pub fn done(&self) -> bool {
        self.answers.is_empty()
    }

    fn next(&mut self, prompt: &str) -> io::Result<String> {
        self.shown.push_str(prompt);
        self.shown.push('\n');
        self.answers.pop_front().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("no answer for {prompt:?}"),
            )
        })
    }
}

#[cfg(test)]
impl Ask for Script {
    fn say(&mut self, text: &str) {
        self.shown.push_str(text);
        self.shown.push('\n');
    }
    fn line(&mut self, prompt: &str) -> io::Result<String> {
        self.next(prompt)
    }
    fn secret(&mut self, prompt: &str) -> io::Result<SecretString> {
        self.next(prompt).map(SecretString::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_by_number_name_or_prefix_and_default() {
        let options = [
            Choice {
                name: "loopback",
                help: String::new(),
                value: 1,
            },
            Choice {
                name: "paste",
                help: String::new(),
                value: 2,
            },
            Choice {
                name: "plaintext",
                help: String::new(),
                value: 3,
            },
        ];
        let mut s = Script::new(&["2", "LOOP", "pa", "pl", ""]);
        assert_eq!(choose(&mut s, "Flow?", &options, None).unwrap(), 2);
        assert_eq!(choose(&mut s, "Flow?", &options, None).unwrap(), 1);
        // "pa" is a prefix of "paste" only; "p" alone would be ambiguous.
        assert_eq!(choose(&mut s, "Flow?", &options, None).unwrap(), 2);
        assert_eq!(choose(&mut s, "Flow?", &options, None).unwrap(), 3);
        assert_eq!(choose(&mut s, "Flow?", &options, Some("paste")).unwrap(), 2);
        let mut s = Script::new(&["p", "9", "device", "paste"]);
        assert_eq!(choose(&mut s, "Flow?", &options, None).unwrap(), 2);
        assert_eq!(s.shown.matches("please answer one of").count(), 3);
    }

    #[test]
    fn gives_up_after_repeated_nonsense_and_at_end_of_input() {
        let mut s = Script::new(&["x"; TRIES]);
        let e = yes_no(&mut s, "Sure?", false).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let mut s = Script::new(&[]);
        let e = text(&mut s, "Name", None, |a| Ok(a.to_string())).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }
}
