//! Hub downloads against a local HTTP server that imitates the Hub's URL layout
//! (`/datasets/<repo>/resolve/<rev>/<path>`, ranged GETs, `etag`/`x-repo-commit` headers).

use pricer::hub::{DATASET_REPO, HubOptions, download_category};
use pricer::jobs::JobCtx;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// One request the fake Hub saw.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    range: Option<String>,
    auth: Option<String>,
}

pub struct FakeHub {
    pub endpoint: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn fake_hub(files: Vec<(String, Vec<u8>)>) -> FakeHub {
    fake_hub_at(&format!("/datasets/{DATASET_REPO}/resolve/main/"), files)
}

/// A fake Hub serving `files` under `prefix` (`/datasets/<repo>/resolve/main/` for a dataset,
/// `/<repo>/resolve/main/` for a model).
pub fn fake_hub_at(prefix: &str, files: Vec<(String, Vec<u8>)>) -> FakeHub {
    let prefix = prefix.to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(64) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let path = request_line.split_whitespace().nth(1).unwrap_or("").to_owned();
            let (mut range, mut auth) = (None, None);
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                let (k, v) = h.split_once(':').unwrap_or((&h, ""));
                match k.to_ascii_lowercase().as_str() {
                    "range" => range = Some(v.trim().to_owned()),
                    "authorization" => auth = Some(v.trim().to_owned()),
                    _ => {}
                }
            }
            seen2.lock().unwrap().push(Seen { path: path.clone(), range: range.clone(), auth });
            let body = path.strip_prefix(&prefix).and_then(|f| files.iter().find(|(n, _)| n == f)).map(|(_, b)| b);
            let Some(body) = body else {
                let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                continue;
            };
            let total = body.len();
            let (start, end) = match range.as_deref().and_then(|r| r.strip_prefix("bytes=")) {
                Some(r) => {
                    let (a, b) = r.split_once('-').unwrap();
                    let a: usize = a.parse().unwrap();
                    let b: usize = if b.is_empty() { total - 1 } else { b.parse().unwrap() };
                    (a, b.min(total - 1))
                }
                None => (0, total - 1),
            };
            let part = &body[start..=end];
            let head = format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{end}/{total}\r\n\
                 ETag: \"etag-{total}\"\r\nX-Repo-Commit: {COMMIT}\r\nConnection: close\r\n\r\n",
                part.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(part);
            let _ = stream.flush();
        }
    });
    FakeHub { endpoint, seen }
}

fn raw_file() -> Vec<u8> {
    pricer::demo::demo_bytes(200, 5)
}

#[test]
fn downloads_into_the_standard_cache_layout_and_copies_out() {
    let body = raw_file();
    let hub = fake_hub(vec![("raw/meta_categories/meta_Appliances.jsonl".into(), body.clone())]);
    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let opts = HubOptions {
        endpoint: Some(hub.endpoint.clone()),
        cache_dir: Some(cache.path().into()),
        token: Some("secret".into()),
    };
    let progress = Arc::new(Mutex::new(Vec::new()));
    let p2 = progress.clone();
    let ctx = JobCtx::with_progress(move |p| p2.lock().unwrap().push((p.done, p.total)));
    let path = download_category("Appliances", Some(out.path()), &opts, &ctx).unwrap();
    assert_eq!(path, out.path().join("meta_Appliances.jsonl"));
    assert_eq!(std::fs::read(&path).unwrap(), body);
    let snapshot = cache
        .path()
        .join("datasets--McAuley-Lab--Amazon-Reviews-2023/snapshots")
        .join(COMMIT)
        .join("raw/meta_categories/meta_Appliances.jsonl");
    assert_eq!(std::fs::read(&snapshot).unwrap(), body);
    assert_eq!(progress.lock().unwrap().last().copied(), Some((body.len() as u64, body.len() as u64)));
    let seen = hub.seen.lock().unwrap().clone();
    assert!(seen.iter().all(|s| s.auth.as_deref() == Some("Bearer secret")), "{seen:?}");
    assert!(seen.iter().any(|s| s.range.as_deref() == Some("bytes=0-0")));
    assert!(seen.iter().all(|s| s.path.ends_with("/resolve/main/raw/meta_categories/meta_Appliances.jsonl")));
    // The downloaded file curates like any raw file.
    let (t, rep) = pricer::curate::Curator::original()
        .unwrap()
        .curate_sources(&[pricer::load::Source::from_path(&path, None)], Default::default(), &JobCtx::default())
        .unwrap();
    assert_eq!(rep.lines_read, 200);
    assert!(t.iter().all(|i| i.category == "Appliances"));
}

#[test]
fn a_partial_download_resumes_from_where_it_stopped() {
    let body = raw_file();
    let hub = fake_hub(vec![("raw/meta_categories/meta_Automotive.jsonl".into(), body.clone())]);
    let cache = tempfile::tempdir().unwrap();
    let blobs = cache.path().join("datasets--McAuley-Lab--Amazon-Reviews-2023/blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    let half = body.len() / 2;
    std::fs::write(blobs.join(format!("etag-{}.part", body.len())), &body[..half]).unwrap();
    let opts = HubOptions { endpoint: Some(hub.endpoint.clone()), cache_dir: Some(cache.path().into()), token: None };
    let path = download_category("Automotive", None, &opts, &JobCtx::default()).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), body);
    let seen = hub.seen.lock().unwrap().clone();
    assert!(seen.iter().any(|s| s.range.as_deref() == Some(&format!("bytes={half}-"))), "{seen:?}");
}

#[test]
fn clear_errors_for_unknown_category_and_offline() {
    let hub = fake_hub(vec![]);
    let cache = tempfile::tempdir().unwrap();
    let opts = HubOptions { endpoint: Some(hub.endpoint.clone()), cache_dir: Some(cache.path().into()), token: None };
    let err = download_category("Nope", None, &opts, &JobCtx::default()).unwrap_err().to_string();
    assert!(err.contains("meta_Nope.jsonl") && err.contains("404"), "{err}");

    // A port nothing listens on stands in for "offline".
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let opts = HubOptions { endpoint: Some(endpoint), cache_dir: Some(cache.path().into()), token: None };
    let err = download_category("Appliances", None, &opts, &JobCtx::default()).unwrap_err().to_string();
    assert!(err.contains("cannot be reached"), "{err}");
}

#[test]
fn cli_download_honours_hf_endpoint_and_hf_token() {
    let body = raw_file();
    let hub = fake_hub(vec![("raw/meta_categories/meta_Toys_and_Games.jsonl".into(), body.clone())]);
    let home = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_pricer"))
        .args(["download", "Toys_and_Games", "--dir"])
        .arg(out.path())
        .env("HF_ENDPOINT", &hub.endpoint)
        .env("HF_HOME", home.path())
        .env("HF_TOKEN", "tok123")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(out.path().join("meta_Toys_and_Games.jsonl")).unwrap(), body);
    assert!(home.path().join("hub/datasets--McAuley-Lab--Amazon-Reviews-2023").exists());
    let seen = hub.seen.lock().unwrap().clone();
    assert!(seen.iter().all(|s| s.auth.as_deref() == Some("Bearer tok123")), "{seen:?}");
}
