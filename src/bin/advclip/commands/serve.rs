//! `advclip serve`: a small static HTTP server for the browser app (`www/` at `/`, `pkg/` and `assets/` beside it).
//!
//! Local use only: it binds 127.0.0.1, answers GET and HEAD, maps URL paths onto three folders and refuses anything
//! that would leave them. One thread per connection is plenty for one browser.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};

#[derive(clap::Args)]
pub struct ServeArgs {
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// The repository root holding www/, pkg/ and assets/
    #[arg(long, value_name = "DIR", default_value = ".")]
    root: PathBuf,
}

pub fn run(args: ServeArgs) -> Result<()> {
    serve(&args.root, args.port)
}

/// Serves `root/www` at `/`, `root/pkg` at `/pkg/` and `root/assets` at `/assets/` until killed.
pub fn serve(root: &Path, port: u16) -> Result<()> {
    let www = root.join("www");
    if !www.join("index.html").is_file() {
        bail!("{}: no index.html; run advclip serve from the repository root (or pass --root)", www.display());
    }
    if !root.join("pkg").join("advclip_bg.wasm").is_file() {
        eprintln!("warning: {}: no wasm package yet; build it with scripts/build-web", root.join("pkg").display());
    }
    let listener = TcpListener::bind(("127.0.0.1", port)).with_context(|| format!("binding 127.0.0.1:{port}"))?;
    let address = listener.local_addr()?;
    println!("serving the advclip app at http://{address}/ (Ctrl-C to stop)");
    let root = root.to_path_buf();
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let root = root.clone();
        std::thread::spawn(move || {
            let _ = handle(stream, &root);
        });
    }
    Ok(())
}

fn handle(mut stream: TcpStream, root: &Path) -> std::io::Result<()> {
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.by_ref().take(8192).read_line(&mut request_line)?;
    // Drain the headers; nothing in them changes the answer.
    loop {
        let mut line = String::new();
        if reader.by_ref().take(8192).read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    if method != "GET" && method != "HEAD" {
        return respond(&mut stream, 405, "text/plain; charset=utf-8", b"only GET and HEAD\n", method == "HEAD");
    }
    match resolve(root, target) {
        Some(path) => match std::fs::read(&path) {
            Ok(body) => respond(&mut stream, 200, content_type(&path), &body, method == "HEAD"),
            Err(_) => respond(&mut stream, 404, "text/plain; charset=utf-8", b"not found\n", method == "HEAD"),
        },
        None => respond(&mut stream, 404, "text/plain; charset=utf-8", b"not found\n", method == "HEAD"),
    }
}

/// The file a URL path names, or None when it is outside the three served folders.
fn resolve(root: &Path, target: &str) -> Option<PathBuf> {
    let path = target.split(['?', '#']).next().unwrap_or("/");
    let path = percent_decode(path)?;
    let (base, rest) = if let Some(rest) = path.strip_prefix("/pkg/") {
        (root.join("pkg"), rest.to_string())
    } else if let Some(rest) = path.strip_prefix("/assets/") {
        (root.join("assets"), rest.to_string())
    } else {
        (root.join("www"), path.trim_start_matches('/').to_string())
    };
    let relative = Path::new(&rest);
    if relative.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    let mut file = base.join(relative);
    if rest.is_empty() || file.is_dir() {
        file = file.join("index.html");
    }
    file.is_file().then_some(file)
}

fn percent_decode(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "wasm" => "application/wasm",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "txt" | "md" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn respond(stream: &mut TcpStream, status: u16, kind: &str, body: &[u8], head_only: bool) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Method Not Allowed",
    };
    let header = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-cache\r\n\
         X-Content-Type-Options: nosniff\r\nCross-Origin-Opener-Policy: same-origin\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(header.as_bytes())?;
    if !head_only {
        stream.write_all(body)?;
    }
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_served_folders() {
        let root = tempfile::tempdir().unwrap();
        for dir in ["www", "pkg", "assets/mini-clip"] {
            std::fs::create_dir_all(root.path().join(dir)).unwrap();
        }
        std::fs::write(root.path().join("www/index.html"), "x").unwrap();
        std::fs::write(root.path().join("pkg/advclip.js"), "x").unwrap();
        std::fs::write(root.path().join("assets/mini-clip/config.json"), "{}").unwrap();
        std::fs::write(root.path().join("secret.txt"), "x").unwrap();
        let r = root.path();
        assert_eq!(resolve(r, "/"), Some(r.join("www/index.html")));
        assert_eq!(resolve(r, "/index.html?backend=cpu"), Some(r.join("www/index.html")));
        assert_eq!(resolve(r, "/pkg/advclip.js"), Some(r.join("pkg/advclip.js")));
        assert_eq!(resolve(r, "/assets/mini-clip/config.json"), Some(r.join("assets/mini-clip/config.json")));
        assert_eq!(resolve(r, "/../secret.txt"), None);
        assert_eq!(resolve(r, "/pkg/../../secret.txt"), None);
        assert_eq!(resolve(r, "/%2e%2e/secret.txt"), None);
        assert_eq!(resolve(r, "/missing.js"), None);
        assert_eq!(content_type(Path::new("a.wasm")), "application/wasm");
    }
}
