//! The layout's rules, checked over the sources rather than promised in
//! comments:
//!
//! - no import circle between files, in either crate (a file depends on
//!   another when it names a path into it: `use` lines and inline
//!   `crate::`/`super::` paths);
//! - only `pipeline/catalog.rs` touches the file system or builds a data
//!   path (`std::fs`, `File`, `.join(`, `read_dir`, `.exists()`, ...);
//! - stages and the models crate deny clippy's `disallowed_methods` (the
//!   file system, the clock, the environment; listed in `clippy.toml`).
//!
//! `cargo nextest run --test architecture -- --nocapture` prints the
//! file-level dependency listing that the README's layout section quotes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A crate's module tree: module path (`stages::train::harness`) to file.
struct Crate {
    root: PathBuf,
    modules: BTreeMap<String, PathBuf>,
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

impl Crate {
    /// Modules of the crate rooted at `root` (its `lib.rs`); `main.rs`
    /// and `bin` files are left out (nothing imports them).
    fn new(root: &Path) -> Crate {
        let mut files = Vec::new();
        rs_files(root, &mut files);
        let mut modules = BTreeMap::new();
        for f in files {
            let rel = f.strip_prefix(root).unwrap().with_extension("");
            let parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let path = match parts.as_slice() {
                [only] if only == "lib" => String::new(),
                [only] if only == "main" => continue,
                _ => {
                    let mut p = parts.clone();
                    if p.last().is_some_and(|l| l == "mod") {
                        p.pop();
                    }
                    p.join("::")
                }
            };
            modules.insert(path, f);
        }
        Crate {
            root: root.to_path_buf(),
            modules,
        }
    }

    /// The module path of `file`.
    fn module_of(&self, file: &Path) -> String {
        self.modules
            .iter()
            .find(|(_, f)| f.as_path() == file)
            .map(|(m, _)| m.clone())
            .unwrap_or_default()
    }

    /// The file that owns `path` (the longest module prefix of it).
    fn file_of(&self, path: &[String]) -> Option<&PathBuf> {
        (0..=path.len())
            .rev()
            .find_map(|n| self.modules.get(&path[..n].join("::")))
    }
}

/// Expands `a::{b, c::{d, e}}` into `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        return vec![tree.to_string()];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(expand)
        .map(|p| format!("{prefix}{p}"))
        .collect()
}

/// The code of a file without comments, string literals and its trailing
/// `#[cfg(test)]` module, with the depth of inline modules on each line.
fn code_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut inline: Vec<usize> = Vec::new();
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]") {
            break;
        }
        let indent = line.len() - t.len();
        if inline
            .last()
            .is_some_and(|i| *i == indent && t.starts_with('}'))
        {
            inline.pop();
            continue;
        }
        let code = match t.find("//") {
            Some(i) => &t[..i],
            None => t,
        };
        // Drop string literals (paths inside messages are not imports).
        let mut clean = String::new();
        let mut in_str = false;
        let mut prev = ' ';
        for c in code.chars() {
            if c == '"' && prev != '\\' {
                in_str = !in_str;
            } else if !in_str {
                clean.push(c);
            }
            prev = c;
        }
        let opens_mod = (clean.starts_with("mod ") || clean.starts_with("pub mod "))
            && clean.trim_end().ends_with('{');
        out.push((inline.len(), clean));
        if opens_mod {
            inline.push(indent);
        }
    }
    out
}

/// The files `file` depends on in `krate` (itself excluded).
fn dependencies(krate: &Crate, file: &Path) -> BTreeSet<PathBuf> {
    let text = std::fs::read_to_string(file).unwrap();
    let here = krate.module_of(file);
    let here: Vec<String> = if here.is_empty() {
        Vec::new()
    } else {
        here.split("::").map(str::to_string).collect()
    };
    let is_mod_file = file
        .file_name()
        .is_some_and(|n| n == "mod.rs" || n == "lib.rs");
    let lines = code_lines(&text);
    let mut paths: Vec<(usize, String)> = Vec::new();
    // `use` statements, possibly over several lines.
    let mut stmt: Option<(usize, String)> = None;
    for (depth, line) in &lines {
        if let Some((d, s)) = stmt.as_mut() {
            s.push_str(line);
            if line.contains(';') {
                let body = s.trim_end().trim_end_matches(';').to_string();
                paths.extend(expand(&body).into_iter().map(|p| (*d, p)));
                stmt = None;
            }
            continue;
        }
        let t = line.trim();
        let body = t
            .strip_prefix("pub use ")
            .or_else(|| t.strip_prefix("pub(crate) use "))
            .or_else(|| t.strip_prefix("use "));
        if let Some(body) = body {
            if body.contains(';') {
                let body = body.trim_end().trim_end_matches(';');
                paths.extend(expand(body).into_iter().map(|p| (*depth, p)));
            } else {
                stmt = Some((*depth, body.to_string()));
            }
            continue;
        }
        // Inline paths in code: `crate::`, `super::`, or a child module's
        // name (`policy::allocate(...)` in `simulate/mod.rs`).
        let mut prefixes = vec!["crate::".to_string(), "super::".to_string()];
        let here_path = here.join("::");
        for m in krate.modules.keys() {
            let parent = m.rsplit_once("::").map(|(p, _)| p).unwrap_or("");
            if parent == here_path && !m.is_empty() {
                prefixes.push(format!("{}::", m.rsplit("::").next().unwrap()));
            }
        }
        for prefix in &prefixes {
            let prefix = prefix.as_str();
            let mut rest = line.as_str();
            while let Some(i) = rest.find(prefix) {
                let before = rest[..i].chars().last();
                let tail = &rest[i..];
                let end = tail
                    .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .unwrap_or(tail.len());
                if !before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    paths.push((*depth, tail[..end].trim_end_matches(':').to_string()));
                }
                rest = &tail[end.max(1)..];
            }
        }
    }
    let mut deps = BTreeSet::new();
    for (depth, p) in paths {
        let p = p.split(" as ").next().unwrap().trim().to_string();
        let segs: Vec<String> = p.split("::").map(|s| s.trim().to_string()).collect();
        // The module the inline module at `depth` sits in, as a path.
        let mut base = here.clone();
        let resolved: Vec<String> = match segs.first().map(String::as_str) {
            Some("crate") => segs[1..].to_vec(),
            Some("super") | Some("self") => {
                // In `foo.rs`, `super` is foo's parent; inside an inline
                // module of depth d, the first d `super`s stay in the file.
                let mut rest = &segs[..];
                let mut inline_left = depth;
                while let Some(first) = rest.first() {
                    match first.as_str() {
                        "self" => rest = &rest[1..],
                        "super" if inline_left > 0 => {
                            inline_left -= 1;
                            rest = &rest[1..];
                        }
                        "super" => {
                            base.pop();
                            rest = &rest[1..];
                        }
                        _ => break,
                    }
                }
                let _ = is_mod_file;
                base.extend(rest.iter().cloned());
                base
            }
            // A path that starts with a child module of this one (2018
            // paths: `use behaviour::behaviour;` in `features/mod.rs`).
            Some(first) if krate.modules.contains_key(&child(&here, first)) => {
                let mut p = here.clone();
                p.extend(segs.iter().cloned());
                p
            }
            _ => continue,
        };
        if let Some(f) = krate.file_of(&resolved)
            && f != file
        {
            deps.insert(f.clone());
        }
    }
    deps
}

/// The module path of `here`'s child `name`.
fn child(here: &[String], name: &str) -> String {
    let mut p = here.to_vec();
    p.push(name.to_string());
    p.join("::")
}

/// Every cycle's files, found by depth-first search (empty: none).
fn cycles(graph: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Vec<Vec<PathBuf>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        n: &PathBuf,
        g: &BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        mark: &mut BTreeMap<PathBuf, Mark>,
        stack: &mut Vec<PathBuf>,
        found: &mut Vec<Vec<PathBuf>>,
    ) {
        mark.insert(n.clone(), Mark::Open);
        stack.push(n.clone());
        for m in g.get(n).into_iter().flatten() {
            match mark.get(m).copied().unwrap_or(Mark::New) {
                Mark::New => visit(m, g, mark, stack, found),
                Mark::Open => {
                    let at = stack.iter().position(|s| s == m).unwrap();
                    found.push(stack[at..].to_vec());
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        mark.insert(n.clone(), Mark::Done);
    }
    let mut mark = BTreeMap::new();
    let mut found = Vec::new();
    for n in graph.keys() {
        if mark.get(n).copied().unwrap_or(Mark::New) == Mark::New {
            visit(n, graph, &mut mark, &mut Vec::new(), &mut found);
        }
    }
    found
}

fn graph(root: &str) -> (Crate, BTreeMap<PathBuf, BTreeSet<PathBuf>>) {
    let krate = Crate::new(&Path::new(env!("CARGO_MANIFEST_DIR")).join(root));
    let g = krate
        .modules
        .values()
        .map(|f| (f.clone(), dependencies(&krate, f)))
        .collect();
    (krate, g)
}

fn show(krate: &Crate, p: &Path) -> String {
    p.strip_prefix(&krate.root).unwrap().display().to_string()
}

#[test]
fn path_joins_are_told_from_string_and_frame_joins() {
    let code = "let p = dir.join(\"features\");\nlet t = v.join(\", \");\nlet u = v.join(\"\\n\");\nlet f = a.join(\n    b,\n    on.clone(),\n    on,\n    args,\n);\nlet q = out\n    .join(format!(\"{x}.json\"));\nlet r = handle.join();\n";
    assert_eq!(path_joins(code), vec![1, 11]);
}

#[test]
fn the_dependency_reader_sees_imports_and_circles() {
    assert_eq!(
        expand("crate::a::{b, c::{d, e as f}, self}"),
        [
            "crate::a::b",
            "crate::a::c::d",
            "crate::a::c::e as f",
            "crate::a::self"
        ]
    );
    let a = PathBuf::from("a.rs");
    let b = PathBuf::from("b.rs");
    let c = PathBuf::from("c.rs");
    let mut g: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
    g.insert(a.clone(), [b.clone()].into());
    g.insert(b.clone(), [c.clone()].into());
    g.insert(c.clone(), BTreeSet::new());
    assert!(cycles(&g).is_empty());
    g.insert(c.clone(), [a.clone()].into());
    assert_eq!(cycles(&g), vec![vec![a, b, c]]);
    // A real file is read: the catalog imports the error module.
    let (krate, g) = graph("pipeline");
    let catalog = krate.modules.get("catalog").unwrap();
    assert!(
        g[catalog].iter().any(|f| f.ends_with("error.rs")),
        "{:?}",
        g[catalog]
    );
}

#[test]
fn no_import_circle_between_files() {
    for root in ["pipeline", "models/src"] {
        let (krate, g) = graph(root);
        println!("{root}: file -> files it imports");
        for (f, deps) in &g {
            let names: Vec<String> = deps.iter().map(|d| show(&krate, d)).collect();
            println!("  {:<34} {}", show(&krate, f), names.join(", "));
        }
        let found = cycles(&g);
        let text: Vec<String> = found
            .iter()
            .map(|c| {
                c.iter()
                    .map(|p| show(&krate, p))
                    .collect::<Vec<_>>()
                    .join(" -> ")
            })
            .collect();
        assert!(
            found.is_empty(),
            "{root}: import circles:\n{}",
            text.join("\n")
        );
    }
}

/// What counts as touching the file system or building a data path.
const FILE_SYSTEM: [&str; 14] = [
    "std::fs",
    "fs::",
    "File::",
    "OpenOptions",
    "read_dir",
    ".join(",
    ".exists()",
    ".is_dir()",
    ".is_file()",
    "with_file_name",
    "with_extension",
    "create_dir",
    "remove_file",
    "remove_dir",
];

/// Line numbers (1-based) of `.join(` calls in `code` that build a path:
/// one argument that is not a separator literal of punctuation and spaces
/// (`.join(", ")` joins strings; polars' `a.join(b, on, on, args)` joins
/// frames; a thread's `handle.join()` has no argument).
fn path_joins(code: &str) -> Vec<usize> {
    let bytes = code.as_bytes();
    let mut found = Vec::new();
    for (at, _) in code.match_indices(".join(") {
        let start = at + ".join(".len();
        let (mut depth, mut commas, mut i, mut in_str) = (0i32, 0, start, false);
        while i < bytes.len() {
            let c = bytes[i] as char;
            if in_str {
                if c == '\\' {
                    i += 1;
                } else if c == '"' {
                    in_str = false;
                }
            } else {
                match c {
                    '"' => in_str = true,
                    '(' | '[' | '{' => depth += 1,
                    ')' | ']' | '}' if depth == 0 => break,
                    ')' | ']' | '}' => depth -= 1,
                    ',' if depth == 0 => commas += 1,
                    _ => {}
                }
            }
            i += 1;
        }
        let arg = code[start..i.min(code.len())].trim();
        let separator = arg.len() >= 2
            && arg.starts_with('"')
            && arg.ends_with('"')
            && (!arg[1..arg.len() - 1].chars().any(char::is_alphanumeric)
                || arg[1..].starts_with('\\'));
        if commas == 0 && !arg.is_empty() && !separator {
            found.push(code[..at].matches('\n').count() + 1);
        }
    }
    found
}

#[test]
fn only_the_catalog_touches_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut offenders = Vec::new();
    for dir in ["pipeline", "models/src"] {
        let mut files = Vec::new();
        rs_files(&root.join(dir), &mut files);
        for f in files {
            if f.ends_with("pipeline/catalog.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&f).unwrap();
            // The code before the unit tests, comments blanked out.
            let code: String = text
                .lines()
                .take_while(|l| !l.trim_start().starts_with("#[cfg(test)]"))
                .map(|l| {
                    if l.trim_start().starts_with("//") {
                        ""
                    } else {
                        l
                    }
                })
                .collect::<Vec<_>>()
                .join("\n");
            let rel = f.strip_prefix(root).unwrap().display().to_string();
            for (n, line) in code.lines().enumerate() {
                for pat in FILE_SYSTEM.iter().filter(|p| **p != ".join(") {
                    if line.contains(pat) {
                        offenders.push(format!("{rel}:{}: `{pat}` in `{}`", n + 1, line.trim()));
                    }
                }
            }
            for n in path_joins(&code) {
                let line = code.lines().nth(n - 1).unwrap_or("").trim();
                offenders.push(format!("{rel}:{n}: a path join in `{line}`"));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "outside the catalog:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn stages_artifacts_and_models_deny_io_the_clock_and_the_environment() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let denies = |file: &str| {
        std::fs::read_to_string(root.join(file))
            .unwrap()
            .contains("#![deny(clippy::disallowed_methods)]")
    };
    for f in [
        "pipeline/stages/mod.rs",
        "pipeline/artifact/mod.rs",
        "models/src/lib.rs",
    ] {
        assert!(denies(f), "{f} does not deny clippy::disallowed_methods");
    }
    // Clippy reads the clippy.toml of a crate's directory or its nearest
    // parent: the root's serves both crates.
    for cfg in ["clippy.toml"] {
        let text = std::fs::read_to_string(root.join(cfg)).unwrap();
        for m in [
            "std::fs::read_to_string",
            "std::fs::File::create",
            "std::time::SystemTime::now",
            "std::time::Instant::now",
            "std::env::var",
        ] {
            assert!(text.contains(m), "{cfg} does not list {m}");
        }
    }
}
