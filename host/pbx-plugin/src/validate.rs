//! Caps checked on an upload before anything compiles it: a single pass of
//! `wasmparser` over every core module inside the component, linear in the
//! upload's size.
//!
//! Compiling with Cranelift costs, per function, roughly the number of locals
//! live across the function's control flow times the number of branches (a
//! 155 KiB component with 4,000 locals across 4,000 branches took 10 s and
//! 2.25 GiB). Capping locals, branches and their product per function bounds
//! the cost of every function; capping functions and body bytes bounds the
//! number of them. Uploads are further compiled in a child process with CPU
//! and memory limits when the runtime is configured with a
//! [`CompileSandbox`](crate::CompileSandbox).

use wasmparser::{Operator, Parser, Payload};

use crate::error::ValidationError;

/// Caps on the code inside an upload, checked before compiling it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileLimits {
    /// Core modules in the component, nested ones included.
    pub max_modules: u32,
    /// Functions with a body, in all modules together.
    pub max_functions: u32,
    /// Bytes of one function body.
    pub max_body_bytes: usize,
    /// Locals of one function (parameters not counted).
    pub max_locals: u32,
    /// Branching instructions (`block`, `loop`, `if`, `br`, `br_if`,
    /// `br_table`, ...) of one function.
    pub max_branches: u32,
    /// Locals times branching instructions, per function: what a register
    /// allocator's work grows with.
    pub max_locals_times_branches: u64,
}

impl Default for CompileLimits {
    /// 32 modules, 100,000 functions, 1 MiB per body, 4,096 locals, 65,536
    /// branches, 2,000,000 locals × branches per function. The shipped Rust
    /// plugins stay far below (their largest function has a few dozen locals).
    fn default() -> Self {
        Self {
            max_modules: 32,
            max_functions: 100_000,
            max_body_bytes: 1 << 20,
            max_locals: 4096,
            max_branches: 65_536,
            max_locals_times_branches: 2_000_000,
        }
    }
}

/// Checks `wasm` against `limits`. Parse errors are left to the compiler, which
/// reports them with more context; this only refuses what is over a cap.
pub(crate) fn check(wasm: &[u8], limits: &CompileLimits) -> Result<(), ValidationError> {
    let over = |what: String| Err(ValidationError::OverLimit(what));
    let mut modules = 0u32;
    let mut functions = 0u32;
    for payload in Parser::new(0).parse_all(wasm) {
        let Ok(payload) = payload else {
            return Ok(());
        };
        match payload {
            Payload::ModuleSection { .. } => {
                modules += 1;
                if modules > limits.max_modules {
                    return over(format!("more than {} core modules", limits.max_modules));
                }
            }
            Payload::CodeSectionEntry(body) => {
                functions += 1;
                if functions > limits.max_functions {
                    return over(format!("more than {} functions", limits.max_functions));
                }
                let size = body.range().len();
                if size > limits.max_body_bytes {
                    return over(format!(
                        "function {functions} is {size} bytes, over {}",
                        limits.max_body_bytes
                    ));
                }
                let mut locals = 0u32;
                let Ok(reader) = body.get_locals_reader() else {
                    return Ok(());
                };
                for entry in reader {
                    let Ok((count, _)) = entry else {
                        return Ok(());
                    };
                    locals = locals.saturating_add(count);
                    if locals > limits.max_locals {
                        return over(format!(
                            "function {functions} has more than {} locals",
                            limits.max_locals
                        ));
                    }
                }
                let Ok(mut ops) = body.get_operators_reader() else {
                    return Ok(());
                };
                let mut branches = 0u32;
                while !ops.eof() {
                    let Ok(op) = ops.read() else {
                        return Ok(());
                    };
                    if is_branching(&op) {
                        branches += 1;
                        if branches > limits.max_branches {
                            return over(format!(
                                "function {functions} has more than {} branches",
                                limits.max_branches
                            ));
                        }
                    }
                }
                let product = u64::from(locals) * u64::from(branches);
                if product > limits.max_locals_times_branches {
                    return over(format!(
                        "function {functions} has {locals} locals across {branches} branches \
                         (product over {})",
                        limits.max_locals_times_branches
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn is_branching(op: &Operator<'_>) -> bool {
    matches!(
        op,
        Operator::Block { .. }
            | Operator::Loop { .. }
            | Operator::If { .. }
            | Operator::Else
            | Operator::Br { .. }
            | Operator::BrIf { .. }
            | Operator::BrTable { .. }
            | Operator::BrOnNull { .. }
            | Operator::BrOnNonNull { .. }
            | Operator::TryTable { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_plugins_are_within_the_default_caps() {
        for (name, wasm) in crate::shipped::POLICIES
            .iter()
            .copied()
            .chain([("default-dialplan", crate::shipped::DEFAULT_DIALPLAN)])
        {
            assert_eq!(check(wasm, &CompileLimits::default()), Ok(()), "{name}");
        }
    }

    #[test]
    fn each_cap_refuses_what_is_over_it() {
        let wasm = crate::shipped::DEFAULT_DIALPLAN;
        let tight = |f: fn(&mut CompileLimits)| {
            let mut limits = CompileLimits::default();
            f(&mut limits);
            check(wasm, &limits).unwrap_err().to_string()
        };
        assert!(tight(|l| l.max_modules = 0).contains("core modules"));
        assert!(tight(|l| l.max_functions = 1).contains("functions"));
        assert!(tight(|l| l.max_body_bytes = 1).contains("bytes"));
        assert!(tight(|l| l.max_locals = 0).contains("locals"));
        assert!(tight(|l| l.max_branches = 0).contains("branches"));
        assert!(tight(|l| l.max_locals_times_branches = 0).contains("product"));
    }
}
