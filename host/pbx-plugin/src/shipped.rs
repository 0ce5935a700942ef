//! Plugins built from `plugins/` by this crate's build script and embedded as
//! bytes: the shipped defaults, and (for tests) hostile examples.
//!
//! The shipped set is one dial plan and two provider policies:
//! - [`DEFAULT_DIALPLAN`] (a call handler, world `call-handler@0.2.0`) for
//!   tenants without their own;
//! - [`RESTRICTIONS`] and [`DEFAULT_POLICY`] (world `policy`), listed in
//!   [`POLICIES`], run for every tenant's calls; any deny wins.

include!(concat!(env!("OUT_DIR"), "/shipped_defaults.rs"));

/// The shipped provider policies with their names: destination-class
/// restrictions first, then the fraud limits.
pub const POLICIES: &[(&str, &[u8])] = &[
    ("restrictions", RESTRICTIONS),
    ("default-policy", DEFAULT_POLICY),
];

/// Hostile and instrumented plugins that tests and benchmarks load.
#[cfg(any(test, feature = "test-plugins"))]
pub mod examples {
    include!(concat!(env!("OUT_DIR"), "/shipped_examples.rs"));
}

/// Hostile components built on the fly: what a Rust toolchain would not emit.
#[cfg(any(test, feature = "test-plugins"))]
pub mod generated {
    use wasm_encoder::{
        CodeSection, Component, ExportKind, ExportSection, Function, FunctionSection,
        InstanceSection, Instruction, MemorySection, MemoryType, Module, ModuleArg, ModuleSection,
        TypeSection, ValType,
    };

    /// A component around `module`, which it instantiates once.
    fn component_of(module: &Module) -> Vec<u8> {
        let mut component = Component::new();
        component.section(&ModuleSection(module));
        let mut instances = InstanceSection::new();
        instances.instantiate(0, Vec::<(&str, ModuleArg)>::new());
        component.section(&instances);
        component.finish()
    }

    /// A component whose core module declares `memories` memories of one page.
    pub fn many_memories(memories: u32) -> Vec<u8> {
        let mut module = Module::new();
        let mut section = MemorySection::new();
        for _ in 0..memories {
            section.memory(MemoryType {
                minimum: 1,
                maximum: None,
                memory64: false,
                shared: false,
                page_size_log2: None,
            });
        }
        module.section(&section);
        component_of(&module)
    }

    /// A compile bomb: `functions` exported functions, each with `locals`
    /// locals kept live across `branches` conditional branches (every branch
    /// reads one local and every local is read after the last branch).
    pub fn compile_bomb(functions: u32, locals: u32, branches: u32) -> Vec<u8> {
        let mut module = Module::new();
        let mut types = TypeSection::new();
        types.ty().function([], [ValType::I32]);
        module.section(&types);
        let mut funcs = FunctionSection::new();
        for _ in 0..functions {
            funcs.function(0);
        }
        module.section(&funcs);
        let mut exports = ExportSection::new();
        for f in 0..functions {
            exports.export(&format!("f{f}"), ExportKind::Func, f);
        }
        module.section(&exports);
        let mut code = CodeSection::new();
        let locals = locals.max(1);
        for _ in 0..functions {
            let mut body = Function::new([(locals, ValType::I32)]);
            for b in 0..branches {
                let local = b % locals;
                body.instruction(&Instruction::Block(wasm_encoder::BlockType::Empty));
                body.instruction(&Instruction::LocalGet(local));
                body.instruction(&Instruction::BrIf(0));
                body.instruction(&Instruction::I32Const(i32::try_from(b).unwrap_or(0)));
                body.instruction(&Instruction::LocalSet((local + 1) % locals));
                body.instruction(&Instruction::End);
            }
            body.instruction(&Instruction::I32Const(0));
            for l in 0..locals {
                body.instruction(&Instruction::LocalGet(l));
                body.instruction(&Instruction::I32Add);
            }
            body.instruction(&Instruction::End);
            code.function(&body);
        }
        module.section(&code);
        component_of(&module)
    }

    /// A compile bomb grown to about `bytes`: functions of `locals` locals
    /// across as many branches, as many as fit.
    pub fn compile_bomb_of_size(bytes: usize, locals: u32) -> Vec<u8> {
        let one = compile_bomb(1, locals, locals).len().max(1);
        let functions = u32::try_from(bytes / one).unwrap_or(u32::MAX).max(1);
        compile_bomb(functions, locals, locals)
    }
}
