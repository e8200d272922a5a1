//! The layering of the library's modules, checked: the table in `docs/architecture.md`
//! ("Layers") against every `crate::` path in the code.

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// Layer of each module, from the table in docs/architecture.md.
    fn layers() -> BTreeMap<String, u32> {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/architecture.md"))
            .expect("docs/architecture.md");
        let section = doc
            .split("\n## Layers\n")
            .nth(1)
            .expect("a '## Layers' section")
            .split("\n## ")
            .next()
            .unwrap_or_default();
        let mut layers = BTreeMap::new();
        for row in section.lines().filter(|l| l.starts_with("| ")) {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let (Some(first), Some(modules)) = (cells.get(1), cells.get(2)) else {
                continue;
            };
            let Some(layer) = first.split_whitespace().next().and_then(|n| n.parse().ok()) else {
                continue;
            };
            for module in modules.split(',') {
                layers.insert(module.trim().trim_matches('`').to_owned(), layer);
            }
        }
        assert!(!layers.is_empty(), "no rows in the Layers table");
        layers
    }

    /// Every module's imports of other modules, test code aside.
    fn imports() -> BTreeMap<String, BTreeSet<String>> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut imports: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut stack = vec![src.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir)
                .expect("read src")
                .map(|e| e.expect("entry").path())
            {
                if entry.is_dir() {
                    stack.push(entry);
                    continue;
                }
                let relative = entry.strip_prefix(&src).expect("under src");
                let top = relative
                    .components()
                    .next()
                    .and_then(|c| c.as_os_str().to_str())
                    .unwrap_or_default()
                    .trim_end_matches(".rs")
                    .to_owned();
                let skipped = ["lib", "main", "cli", "testing", "layers"].contains(&top.as_str())
                    || entry.file_name().is_some_and(|n| n == "tests.rs");
                if skipped || entry.extension().is_none_or(|x| x != "rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&entry).expect("read source");
                let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or_default();
                let found = imports.entry(top.clone()).or_default();
                for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
                    for (at, _) in line.match_indices("crate::") {
                        let name: String = line[at + "crate::".len()..]
                            .chars()
                            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                            .collect();
                        if !name.is_empty() && name != top {
                            found.insert(name);
                        }
                    }
                }
            }
        }
        imports
    }

    #[test]
    fn imports_follow_the_layers_of_docs_architecture_md() {
        let layers = layers();
        let imports = imports();
        let mut wrong = Vec::new();
        for (module, used) in &imports {
            let Some(own) = layers.get(module) else {
                wrong.push(format!("module `{module}` is not in the Layers table"));
                continue;
            };
            for other in used {
                match layers.get(other) {
                    None => wrong.push(format!(
                        "`{module}` imports `{other}`, which is not in the Layers table"
                    )),
                    Some(layer) if layer > own => wrong.push(format!(
                        "`{module}` (layer {own}) imports `{other}` (layer {layer}): imports may not go up"
                    )),
                    Some(_) => {}
                }
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn imports_form_no_cycle() {
        let imports = imports();
        // Depth-first search; `path` is the chain being followed.
        fn visit<'a>(
            module: &'a str,
            imports: &'a BTreeMap<String, BTreeSet<String>>,
            done: &mut BTreeSet<&'a str>,
            path: &mut Vec<&'a str>,
        ) -> Option<Vec<String>> {
            if let Some(start) = path.iter().position(|m| *m == module) {
                let mut cycle: Vec<String> = path[start..].iter().map(|m| m.to_string()).collect();
                cycle.push(module.to_owned());
                return Some(cycle);
            }
            if !done.insert(module) {
                return None;
            }
            path.push(module);
            for next in imports.get(module).into_iter().flatten() {
                if let Some(cycle) = visit(next, imports, done, path) {
                    return Some(cycle);
                }
            }
            path.pop();
            None
        }
        let mut done = BTreeSet::new();
        for module in imports.keys() {
            if let Some(cycle) = visit(module, &imports, &mut done, &mut Vec::new()) {
                panic!("import cycle: {}", cycle.join(" -> "));
            }
        }
    }
}
