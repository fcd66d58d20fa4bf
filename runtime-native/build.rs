//! Embeds the playground's static files into the `vostok` binary (served by `vostok playground`).
//!
//! The page (`playground/web/`) is source and is always embedded. The WebAssembly module and its
//! wasm-bindgen glue (`playground/pkg/`) are a build product of `scripts/build-playground.sh`:
//! when they are present they are embedded under `/pkg/`; when they are not, `/` serves a short
//! page saying how to build them instead, so `cargo build` works on a fresh checkout.
//!
//! The generated `$OUT_DIR/playground_assets.rs` holds one table:
//! `ASSETS: &[(url_path, content_type, bytes)]` plus `PLAYGROUND_BUILT: bool`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The page shown at `/` when `playground/pkg/` has not been built.
const NOT_BUILT_HTML: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Vostok playground: not built</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:3em auto;padding:0 1em}
code,pre{background:#f3f3f3;padding:.1em .3em}</style></head>
<body><h1>The playground is not built into this binary</h1>
<p>The playground runs Vostok's core compiled to WebAssembly. That module is a build product,
and this <code>vostok</code> binary was built without it.</p>
<p>From the repository root, build the module and then the binary again:</p>
<pre>scripts/build-playground.sh
cargo build -p vostok --release
target/release/vostok playground</pre>
</body></html>
"#;

fn content_type(path: &Path) -> Option<&'static str> {
    Some(match path.extension()?.to_str()? {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "wasm" => "application/wasm",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
        _ => return None,
    })
}

/// Every regular file under `dir`, sorted so the generated table is reproducible.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.is_file() {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn url_path(root: &Path, file: &Path, prefix: &str) -> String {
    let rel = file.strip_prefix(root).unwrap_or(file);
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    format!("{prefix}/{}", parts.join("/"))
}

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let playground = manifest_dir.join("../playground");
    let web = playground.join("web");
    let pkg = playground.join("pkg");
    // Cargo scans a directory recursively for changes; `playground/` exists even when `pkg/` does
    // not, so a later `scripts/build-playground.sh` also triggers a rebuild.
    println!("cargo:rerun-if-changed={}", playground.display());

    let built = pkg.join("vostok_playground.js").is_file()
        && pkg.join("vostok_playground_bg.wasm").is_file();

    let mut assets: Vec<(String, &'static str, String)> = Vec::new();
    for file in files_under(&web) {
        let Some(ct) = content_type(&file) else {
            continue;
        };
        assets.push((url_path(&web, &file, ""), ct, file.display().to_string()));
    }
    if built {
        for file in files_under(&pkg) {
            // Only what the browser loads: the glue and the module (not .d.ts or package.json).
            let ext = file.extension().and_then(|e| e.to_str());
            if !matches!(ext, Some("js" | "wasm")) {
                continue;
            }
            let Some(ct) = content_type(&file) else {
                continue;
            };
            assets.push((
                url_path(&pkg, &file, "/pkg"),
                ct,
                file.display().to_string(),
            ));
        }
    } else {
        let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
        let page = out_dir.join("playground_not_built.html");
        std::fs::write(&page, NOT_BUILT_HTML).expect("write to OUT_DIR");
        assets.retain(|(path, _, _)| path != "/index.html");
        assets.push((
            "/index.html".to_string(),
            "text/html; charset=utf-8",
            page.display().to_string(),
        ));
    }

    let mut code = String::new();
    let _ = writeln!(
        code,
        "/// Whether `playground/pkg/` (the WebAssembly build) was embedded.\n\
         pub const PLAYGROUND_BUILT: bool = {built};\n\
         /// Embedded files: (URL path, Content-Type, bytes).\n\
         pub static ASSETS: &[(&str, &str, &[u8])] = &["
    );
    for (path, ct, file) in &assets {
        let _ = writeln!(code, "    ({path:?}, {ct:?}, include_bytes!({file:?})),");
    }
    code.push_str("];\n");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    std::fs::write(out_dir.join("playground_assets.rs"), code).expect("write to OUT_DIR");
}
