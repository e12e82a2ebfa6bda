//! WGSL sources (the repository's `shaders/` folder, compiled in) and the small preprocessor
//! that specialises them: `#if FLAG`, `#if A || B`, `#if !A && !B`, `#else`, `#endif`,
//! `#include file.wgsl`, and `{{NAME}}` constants. `enable` directives are hoisted to the top,
//! where WGSL wants them.

use std::collections::HashSet;

/// Every shader file, by name.
const SOURCES: &[(&str, &str)] = &[
    ("quant.wgsl", include_str!("../../../shaders/quant.wgsl")),
    ("reduce.wgsl", include_str!("../../../shaders/reduce.wgsl")),
    ("rope.wgsl", include_str!("../../../shaders/rope.wgsl")),
    ("matvec.wgsl", include_str!("../../../shaders/matvec.wgsl")),
    (
        "matvec_dot8.wgsl",
        include_str!("../../../shaders/matvec_dot8.wgsl"),
    ),
    ("matmul.wgsl", include_str!("../../../shaders/matmul.wgsl")),
    (
        "matmul_dot8.wgsl",
        include_str!("../../../shaders/matmul_dot8.wgsl"),
    ),
    (
        "quantize.wgsl",
        include_str!("../../../shaders/quantize.wgsl"),
    ),
    ("embed.wgsl", include_str!("../../../shaders/embed.wgsl")),
    ("norm.wgsl", include_str!("../../../shaders/norm.wgsl")),
    (
        "residual.wgsl",
        include_str!("../../../shaders/residual.wgsl"),
    ),
    ("qkv.wgsl", include_str!("../../../shaders/qkv.wgsl")),
    (
        "attention.wgsl",
        include_str!("../../../shaders/attention.wgsl"),
    ),
    ("act.wgsl", include_str!("../../../shaders/act.wgsl")),
    (
        "kv_copy.wgsl",
        include_str!("../../../shaders/kv_copy.wgsl"),
    ),
];

fn source(name: &str) -> Result<&'static str, String> {
    SOURCES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| *s)
        .ok_or_else(|| format!("no shader named {name}"))
}

/// `name` specialised for `flags` and `consts`.
pub(crate) fn build(
    name: &str,
    flags: &[&str],
    consts: &[(&str, String)],
) -> Result<String, String> {
    let flags: HashSet<&str> = flags.iter().copied().collect();
    let mut body = String::new();
    let mut enables = Vec::new();
    expand(name, &flags, &mut body, &mut enables, 0)?;
    for (k, v) in consts {
        body = body.replace(&format!("{{{{{k}}}}}"), v);
    }
    if let Some(at) = body.find("{{") {
        let rest: String = body[at..].chars().take(40).collect();
        return Err(format!("{name}: unset constant at '{rest}'"));
    }
    enables.sort();
    enables.dedup();
    let mut out = enables.join("\n");
    out.push('\n');
    out += &body;
    Ok(out)
}

fn holds(expr: &str, flags: &HashSet<&str>) -> bool {
    expr.split("||").any(|any| {
        any.split("&&").all(|term| {
            let term = term.trim();
            match term.strip_prefix('!') {
                Some(f) => !flags.contains(f.trim()),
                None => flags.contains(term),
            }
        })
    })
}

fn expand(
    name: &str,
    flags: &HashSet<&str>,
    out: &mut String,
    enables: &mut Vec<String>,
    depth: usize,
) -> Result<(), String> {
    if depth > 4 {
        return Err(format!("{name}: includes nested too deeply"));
    }
    // Per open #if: (this branch is live, an enclosing branch is live).
    let mut stack: Vec<(bool, bool)> = Vec::new();
    let live = |stack: &[(bool, bool)]| stack.iter().all(|&(on, _)| on);
    for (no, line) in source(name)?.lines().enumerate() {
        let t = line.trim_start();
        if let Some(expr) = t.strip_prefix("#if ") {
            let outer = live(&stack);
            stack.push((holds(expr, flags), outer));
        } else if t.starts_with("#else") {
            let Some(top) = stack.last_mut() else {
                return Err(format!("{name}:{}: #else without #if", no + 1));
            };
            top.0 = !top.0;
        } else if t.starts_with("#endif") {
            if stack.pop().is_none() {
                return Err(format!("{name}:{}: #endif without #if", no + 1));
            }
        } else if !live(&stack) {
        } else if let Some(file) = t.strip_prefix("#include ") {
            expand(file.trim(), flags, out, enables, depth + 1)?;
        } else if t.starts_with("enable ") {
            enables.push(t.trim_end().to_owned());
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !stack.is_empty() {
        return Err(format!("{name}: unterminated #if"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_and_constants() {
        let f: HashSet<&str> = ["A", "B"].into_iter().collect();
        assert!(holds("A", &f));
        assert!(holds("C || B", &f));
        assert!(!holds("!A && !C", &f));
        assert!(holds("!C && A", &f));
        let s = build(
            "matvec.wgsl",
            &["FMT_Q4_0", "K_U4"],
            &[
                ("NR", "4".into()),
                ("S", "2".into()),
                ("MIN_OFFSET", "-8.0".into()),
            ],
        )
        .expect("builds");
        assert!(s.contains("const NR: u32 = 4u;"));
        assert!(!s.contains("#if"));
        assert!(!s.contains("unpack4xI8"), "only the Q4_0 path is kept");
    }
}
