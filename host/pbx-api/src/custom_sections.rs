//! Counts the custom sections of an uploaded WebAssembly module or component,
//! nested modules and components included, so an upload cannot carry
//! megabytes of arbitrary data past the per-tenant limits. Only the section
//! framing is read (id, LEB128 size); judging the code is the plugin
//! runtime's job, and bytes that do not frame as wasm are left to it.

/// Custom sections an upload may carry, at every nesting level together (the
/// shipped plugins carry 3 to 5).
pub(crate) const MAX_CUSTOM_SECTIONS: usize = 16;
/// Bytes the custom sections of an upload may take together (the shipped
/// plugins' names and producers take 0.4 to 15 KiB; debug information does not
/// fit: strip it before uploading).
pub(crate) const MAX_CUSTOM_BYTES: usize = 64 << 10;
/// Deepest nesting of components and modules looked into.
const MAX_DEPTH: usize = 8;

/// Custom sections found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Custom {
    pub(crate) count: usize,
    pub(crate) bytes: usize,
}

fn leb_u32(bytes: &[u8], pos: &mut usize) -> Option<u32> {
    let mut out: u32 = 0;
    for i in 0..5 {
        let b = *bytes.get(*pos)?;
        *pos += 1;
        out |= u32::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some(out);
        }
    }
    None
}

/// Counts the custom sections of `bytes` (a module or a component).
pub(crate) fn scan(bytes: &[u8]) -> Custom {
    let mut found = Custom::default();
    walk(bytes, 0, &mut found);
    found
}

fn walk(bytes: &[u8], depth: usize, found: &mut Custom) {
    if depth > MAX_DEPTH || bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return;
    }
    // A core module is version 1, layer 0; a component has layer 1 (bytes
    // 6-7). Anything else is not framed as wasm: left to validation.
    let component = bytes[6..8] == [1, 0];
    if !component && bytes[4..8] != [1, 0, 0, 0] {
        return;
    }
    let mut pos = 8;
    while pos < bytes.len() {
        let id = bytes[pos];
        pos += 1;
        let Some(size) = leb_u32(bytes, &mut pos) else {
            return;
        };
        let Some(end) = pos.checked_add(size as usize).filter(|&e| e <= bytes.len()) else {
            return;
        };
        let payload = &bytes[pos..end];
        match id {
            0 => {
                found.count += 1;
                found.bytes += payload.len();
            }
            // A component's nested core module (1) and nested component (4).
            1 | 4 if component => walk(payload, depth + 1, found),
            _ => {}
        }
        pos = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(id: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![id];
        let mut n = payload.len();
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
        out.extend_from_slice(payload);
        out
    }

    const MODULE: &[u8] = b"\0asm\x01\0\0\0";
    const COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    #[test]
    fn counts_custom_sections_at_every_level() {
        let mut module = MODULE.to_vec();
        module.extend(section(0, b"\x04namexyz"));
        module.extend(section(1, b"\x00"));
        let mut component = COMPONENT.to_vec();
        component.extend(section(0, &[7u8; 300]));
        component.extend(section(1, &module));
        let mut inner = COMPONENT.to_vec();
        inner.extend(section(0, b"abc"));
        component.extend(section(4, &inner));
        assert_eq!(
            scan(&component),
            Custom {
                count: 3,
                bytes: 300 + 8 + 3
            }
        );
    }

    #[test]
    fn bytes_that_are_not_wasm_count_nothing_and_never_panic() {
        assert_eq!(scan(b"\0asm-v"), Custom::default());
        let mut zeros = b"\0asm".to_vec();
        zeros.resize(4096, 0);
        assert_eq!(scan(&zeros), Custom::default(), "version 0 is not wasm");
        assert_eq!(scan(b""), Custom::default());
        let mut truncated = COMPONENT.to_vec();
        truncated.extend([0, 0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(scan(&truncated), Custom::default());
        let mut deep = COMPONENT.to_vec();
        for _ in 0..20 {
            let mut outer = COMPONENT.to_vec();
            outer.extend(section(4, &deep));
            deep = outer;
        }
        let _ = scan(&deep);
    }
}
