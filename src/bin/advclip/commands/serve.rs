//! `advclip serve`: a small static HTTP server for the browser app (`www/` at `/`, `pkg/` and `assets/` beside it).
//!
//! Local use only: it binds 127.0.0.1, answers GET and HEAD (requests parsed by `httparse`), maps URL paths onto
//! three folders and serves only regular files inside them (no `..`, no symlink out). A fixed pool of workers
//! behind a bounded queue serves the connections: a flood costs a bounded number of threads, never one each.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

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
    // A fixed pool of workers behind a bounded queue: a flood of (idle) connections costs WORKERS threads and
    // QUEUE sockets, and what does not fit is answered 503 at once.
    let (queue, work) = std::sync::mpsc::sync_channel::<TcpStream>(QUEUE);
    let work = std::sync::Arc::new(std::sync::Mutex::new(work));
    for _ in 0..WORKERS {
        let (work, root) = (work.clone(), root.to_path_buf());
        std::thread::spawn(move || {
            loop {
                let next = work.lock().map(|w| w.recv());
                let Ok(Ok(stream)) = next else { return };
                let _ = handle(stream, &root);
            }
        });
    }
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        if let Err(std::sync::mpsc::TrySendError::Full(mut stream)) = queue.try_send(stream) {
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = respond(&mut stream, 503, TEXT, b"busy: too many connections\n", false);
        }
    }
    Ok(())
}

/// Connections handled at once, and connections waiting for a worker.
const WORKERS: usize = 8;
const QUEUE: usize = 64;
/// The request head (request line and headers) may be at most this long.
const MAX_HEAD: usize = 16 * 1024;
const TEXT: &str = "text/plain; charset=utf-8";

fn handle(mut stream: TcpStream, root: &Path) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    let (method, target) = loop {
        let n = match stream.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            // A client that sends nothing in time is dropped; a worker never waits on one for long.
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return respond(&mut stream, 408, TEXT, b"request timeout\n", false);
            }
            Err(e) => return Err(e),
        };
        head.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&head) {
            Ok(httparse::Status::Complete(_)) => {
                break (request.method.unwrap_or("").to_string(), request.path.unwrap_or("/").to_string());
            }
            Ok(httparse::Status::Partial) if head.len() < MAX_HEAD => continue,
            Ok(httparse::Status::Partial) => {
                return respond(&mut stream, 431, TEXT, b"request head too large\n", false);
            }
            Err(_) => return respond(&mut stream, 400, TEXT, b"malformed request\n", false),
        }
    };
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return respond(&mut stream, 405, TEXT, b"only GET and HEAD\n", false);
    }
    match resolve(root, &target).map(|path| std::fs::read(&path).map(|body| (path, body))) {
        Some(Ok((path, body))) => respond(&mut stream, 200, content_type(&path), &body, head_only),
        _ => respond(&mut stream, 404, TEXT, b"not found\n", head_only),
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
    // Only regular files that really lie in the folder: a symlink pointing out of it is not followed.
    let (real, base) = (file.canonicalize().ok()?, base.canonicalize().ok()?);
    (real.starts_with(&base) && real.is_file()).then_some(file)
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
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    // COOP + COEP make the page cross-origin isolated: SharedArrayBuffer, and with it the threaded CPU path.
    let header = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-cache\r\n\
         X-Content-Type-Options: nosniff\r\nCross-Origin-Opener-Policy: same-origin\r\n\
         Cross-Origin-Embedder-Policy: require-corp\r\nConnection: close\r\n\r\n",
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
        // A symlink inside a served folder that points out of it is not served.
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(r.join("secret.txt"), r.join("www/link.txt")).unwrap();
            assert_eq!(resolve(r, "/link.txt"), None);
        }
    }
}
