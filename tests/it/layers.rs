//! The layering rules of the README's architecture section, checked on the source: the core
//! never imports the app or a GUI crate, the core's modules import each other without a circle,
//! and so do the fine-tuning modules. `cargo test layers -- --nocapture` prints the import graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// GUI crates only `src/app/` (and the app's binary) may name.
const GUI_CRATES: [&str; 5] = ["egui", "eframe", "egui_plot", "egui_extras", "rfd"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `src/finetune/train.rs` → `["finetune", "train"]`; `src/finetune/mod.rs` → `["finetune"]`.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_owned());
    }
    parts
}

/// The code of a file without comments and without `#[cfg(test)] mod tests { … }` blocks.
fn code_of(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]") && lines.peek().is_some_and(|l| l.trim_start().starts_with("mod tests")) {
            let mut depth = 0i32;
            let mut opened = false;
            for l in lines.by_ref() {
                depth += l.matches('{').count() as i32 - l.matches('}').count() as i32;
                opened |= l.contains('{');
                if opened && depth <= 0 {
                    break;
                }
            }
            continue;
        }
        let code = match line.find("//") {
            Some(i) if !line[..i].contains('"') => &line[..i],
            _ => line,
        };
        out.push_str(code);
        out.push('\n');
    }
    out
}

/// First path segments after `prefix` (`crate::`, `super::`): `crate::{a::b, c}` gives a and c.
fn targets_after(code: &str, prefix: &str) -> Vec<String> {
    let mut out = vec![];
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().next_back();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut end = 0;
            for (k, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    end = k;
                    break;
                }
            }
            let mut depth = 0;
            let mut item = String::new();
            for c in group[..end].chars().chain(std::iter::once(',')) {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        let name: String =
                            item.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                        if !name.is_empty() {
                            out.push(name);
                        }
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
        } else {
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                out.push(name);
            }
        }
    }
    out
}

struct Graph {
    /// Top-level module → top-level modules it uses.
    top: BTreeMap<String, BTreeSet<String>>,
    /// `finetune` submodule → `finetune` submodules it uses.
    finetune: BTreeMap<String, BTreeSet<String>>,
    /// Files of the core that name a GUI crate or the app.
    gui_in_core: Vec<String>,
}

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![];
    rust_files(&src, &mut files);
    files.sort();
    let top_level: BTreeSet<String> =
        files.iter().map(|f| module_path(&src, f)).filter_map(|m| m.first().cloned()).filter(|m| m != "bin").collect();
    let ft_modules: BTreeSet<String> = files
        .iter()
        .map(|f| module_path(&src, f))
        .filter(|m| m.len() == 2 && m[0] == "finetune")
        .map(|m| m[1].clone())
        .collect();
    let mut g = Graph { top: BTreeMap::new(), finetune: BTreeMap::new(), gui_in_core: vec![] };
    for f in &files {
        let m = module_path(&src, f);
        let Some(top) = m.first().cloned() else { continue };
        if top == "bin" {
            continue;
        }
        let code = code_of(&std::fs::read_to_string(f).unwrap());
        let is_core = top != "app";
        if is_core {
            let named_gui = GUI_CRATES.iter().any(|c| !targets_after(&code, &format!("{c}::")).is_empty());
            let named_app = targets_after(&code, "crate::").iter().any(|t| t == "app");
            if named_gui || named_app {
                g.gui_in_core.push(f.strip_prefix(&src).unwrap().display().to_string());
            }
        }
        let mut uses: BTreeSet<String> = BTreeSet::new();
        for t in targets_after(&code, "crate::") {
            let t = if t == "Error" || t == "Result" { "error".to_owned() } else { t };
            if top_level.contains(&t) {
                uses.insert(t);
            }
        }
        // `super::x` inside `a::b` is the sibling `a::x` (or the top-level `x` from `a/mod.rs`).
        let parent: Vec<String> = if f.ends_with("mod.rs") { m.clone() } else { m[..m.len() - 1].to_vec() };
        let supers = targets_after(&code, "super::");
        if parent.is_empty() {
            uses.extend(supers.iter().filter(|t| top_level.contains(*t)).cloned());
        }
        uses.remove(&top);
        g.top.entry(top.clone()).or_default().extend(uses);
        if m.len() == 2 && m[0] == "finetune" {
            let mut ft: BTreeSet<String> = supers.into_iter().filter(|t| ft_modules.contains(t)).collect();
            let mut rest = code.as_str();
            while let Some(i) = rest.find("crate::finetune::") {
                rest = &rest[i + "crate::finetune::".len()..];
                let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if ft_modules.contains(&name) {
                    ft.insert(name);
                }
            }
            ft.remove(&m[1]);
            g.finetune.insert(m[1].clone(), ft);
        }
    }
    g
}

/// A circle in `edges`, if there is one (as the list of its nodes).
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_owned(), 1);
        stack.push(n.to_owned());
        for m in edges.get(n).into_iter().flatten() {
            match state.get(m.as_str()).copied().unwrap_or(0) {
                1 => {
                    let from = stack.iter().position(|s| s == m).unwrap_or(0);
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(m, edges, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in edges.keys() {
        if state.get(n.as_str()).copied().unwrap_or(0) == 0
            && let Some(c) = visit(n, edges, &mut state, &mut vec![])
        {
            return Some(c);
        }
    }
    None
}

fn print(title: &str, edges: &BTreeMap<String, BTreeSet<String>>) {
    println!("{title}");
    for (k, v) in edges {
        println!("  {k} → {}", v.iter().cloned().collect::<Vec<_>>().join(", "));
    }
}

#[test]
fn the_core_never_imports_the_app_or_a_gui_crate() {
    let g = graph();
    assert!(g.gui_in_core.is_empty(), "core files naming the app or a GUI crate: {:?}", g.gui_in_core);
    assert!(g.top.contains_key("app") && g.top.contains_key("finetune"), "the parser found the modules");
}

#[test]
fn the_core_modules_import_each_other_without_a_circle() {
    let g = graph();
    print("core modules (module → modules it uses):", &g.top);
    let core: BTreeMap<String, BTreeSet<String>> =
        g.top.iter().filter(|(k, _)| *k != "app").map(|(k, v)| (k.clone(), v.clone())).collect();
    assert!(core.values().all(|v| !v.contains("app")));
    assert_eq!(find_cycle(&core), None, "an import circle among the core modules");
    // The check would see one: a circle added by hand is found.
    let mut with_circle = core.clone();
    with_circle.entry("items".into()).or_default().insert("sampling".into());
    assert!(find_cycle(&with_circle).is_some());
}

#[test]
fn the_finetuning_modules_import_each_other_without_a_circle() {
    let g = graph();
    print("finetune modules:", &g.finetune);
    assert!(g.finetune.len() >= 8, "{:?}", g.finetune.keys());
    assert_eq!(find_cycle(&g.finetune), None, "an import circle among the fine-tuning modules");
    // Pricers may use fine-tuning; fine-tuning never uses pricers.
    assert!(!g.top["finetune"].contains("pricers"));
}
