//! A small Dockerfile reader: stages (`FROM … AS name`) and their instructions.

use crate::files::read;

pub(super) struct Stage {
    pub(super) name: Option<String>,
    pub(super) base: String,
    /// (INSTRUCTION in upper case, arguments), continuation lines joined, comments dropped.
    pub(super) instructions: Vec<(String, String)>,
}

pub(super) fn dockerfile(rel: &str) -> Vec<Stage> {
    let text = read(rel);
    let mut logical: Vec<String> = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                logical.push(std::mem::take(&mut current));
            }
        }
    }
    let mut stages: Vec<Stage> = Vec::new();
    for line in logical {
        let (keyword, args) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
        let keyword = keyword.to_ascii_uppercase();
        let args = args.trim().to_owned();
        if keyword == "FROM" {
            let words: Vec<&str> = args
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            let name = match words.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some((*name).to_owned()),
                [_] => None,
                _ => panic!("{rel}: cannot read FROM {args}"),
            };
            stages.push(Stage {
                name,
                base: words[0].to_owned(),
                instructions: Vec::new(),
            });
        } else if keyword != "ARG" || !stages.is_empty() {
            stages
                .last_mut()
                .unwrap_or_else(|| panic!("{rel}: {keyword} before the first FROM"))
                .instructions
                .push((keyword, args));
        }
    }
    assert!(!stages.is_empty(), "{rel} has no FROM");
    stages
}

pub(super) fn stage<'a>(stages: &'a [Stage], name: &str) -> Option<&'a Stage> {
    stages.iter().find(|s| s.name.as_deref() == Some(name))
}

/// The last value of `instruction` in the stage or, if it has none, in the stage it is built FROM.
pub(super) fn inherited<'a>(
    stages: &'a [Stage],
    stage: &'a Stage,
    instruction: &str,
) -> Option<&'a str> {
    let own = stage
        .instructions
        .iter()
        .rev()
        .find(|(k, _)| k == instruction)
        .map(|(_, v)| v.as_str());
    own.or_else(|| {
        self::stage(stages, &stage.base).and_then(|base| inherited(stages, base, instruction))
    })
}

/// The sources of the stage's COPY/ADD instructions that read the build context (no `--from`).
pub(super) fn context_sources(stage: &Stage) -> Vec<String> {
    let mut sources = Vec::new();
    for (keyword, args) in &stage.instructions {
        if keyword != "COPY" && keyword != "ADD" {
            continue;
        }
        let words: Vec<String> = if args.starts_with('[') {
            serde_json::from_str(args).unwrap_or_else(|e| panic!("{keyword} {args}: {e}"))
        } else {
            args.split_whitespace().map(str::to_owned).collect()
        };
        if words.iter().any(|w| w.starts_with("--from")) {
            continue;
        }
        let paths: Vec<&String> = words.iter().filter(|w| !w.starts_with("--")).collect();
        assert!(
            paths.len() >= 2,
            "{keyword} {args}: no source or destination"
        );
        sources.extend(paths[..paths.len() - 1].iter().map(|p| (*p).clone()));
    }
    sources
}
