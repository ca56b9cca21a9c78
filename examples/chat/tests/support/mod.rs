//! Processes of the chat's end-to-end tests: a private `redis-server`, chat nodes, and Node
//! scripts with a deadline. Every process is killed when its guard drops, whatever the test's
//! outcome. (The Redis helpers are those of `examples/interop/tests/support`, copied: an
//! example's tests do not reach into another example.)

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// One HTTP/1.1 request; the response body.
pub(crate) fn http(port: u16, method: &str, path: &str, body: &str) -> String {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\
         Content-Type: text/plain\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).unwrap();
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// The value of a metric line (`name value` or `name{labels} value`).
pub(crate) fn value(text: &str, metric: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(metric) && l[metric.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {metric} in:\n{text}"))
}

/// A free TCP port on 127.0.0.1 (released before use; the OS does not hand it out again at
/// once).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something listens on `port`.
pub(crate) fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The folder of the npm packages of these tests, checked to be installed.
pub(crate) fn js_dir() -> PathBuf {
    let js = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    assert!(
        js.join("node_modules/playwright-core").exists(),
        "the npm packages of the chat tests are missing: run scripts/test (it runs `npm ci` in {})",
        js.display()
    );
    js
}

/// The repository's root (screenshots go to its `artifacts/`).
pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_owned()
}

/// A `redis-server` of the test's own, on a free port, keeping nothing on disk.
pub(crate) struct Redis {
    child: Child,
    pub(crate) port: u16,
}

impl Redis {
    pub(crate) fn start() -> Self {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is not installed (scripts/test installs it)");
        let redis = Redis { child, port };
        wait_listening(port, "redis-server");
        redis
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `chat` node.
pub(crate) struct ChatNode {
    child: Child,
    pub(crate) port: u16,
    pub(crate) name: String,
    redis_url: String,
    /// The extra environment it was started with, and is restarted with.
    env: Vec<(String, String)>,
}

impl ChatNode {
    /// Starts a node on a free port, in a cluster on `redis_url`, and waits until it is
    /// subscribed (its "chat listening" log line comes after that) and answers `/health`.
    pub(crate) fn start(name: &str, redis_url: &str) -> Self {
        Self::start_on(name, redis_url, free_port(), &[])
    }

    /// [`start`](Self::start) with more environment variables (e.g. `FORWARDING=off`).
    pub(crate) fn start_with(name: &str, redis_url: &str, env: &[(&str, &str)]) -> Self {
        Self::start_on(name, redis_url, free_port(), env)
    }

    /// Starts a node on `port` with more environment variables (see [`ChatNode::start`]).
    pub(crate) fn start_on(name: &str, redis_url: &str, port: u16, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_chat"))
            .env("PORT", port.to_string())
            .env("NODE_NAME", name)
            .env("REDIS_URL", redis_url)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .spawn()
            .expect("cannot start the chat binary");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let label = name.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("chat listening on") {
                    let _ = tx.send(());
                }
                // Shown by the test harness only when the test fails.
                println!("[{label}] {line}");
            }
        });
        let node = ChatNode {
            child,
            port,
            name: name.to_owned(),
            redis_url: redis_url.to_owned(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        rx.recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("chat node {name} did not start"));
        wait_listening(port, name);
        node
    }

    /// Stops the node as an orchestrator does (SIGTERM, then waits for it to exit) and starts
    /// it again on the same port: one step of a rolling restart.
    pub(crate) fn restart(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.child.try_wait().ok().flatten().is_none() {
            assert!(
                Instant::now() < deadline,
                "{} did not stop on SIGTERM",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let env = std::mem::take(&mut self.env);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        *self = ChatNode::start_on(&self.name, &self.redis_url, self.port, &env);
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills the node at once (SIGKILL: a crash, not a graceful stop).
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The process id, for signals.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ChatNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `node script args...` in the tests' npm folder for at most `limit`; whether it
/// succeeded, and its output.
pub(crate) fn run_node(script: &str, args: &[String], limit: Duration) -> (bool, String) {
    let js = js_dir();
    let mut child = Command::new("node")
        .arg(js.join(script))
        .args(args)
        .current_dir(&js)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run node");
    // Read both pipes while waiting, so that a chatty script cannot block on a full pipe.
    fn read(mut pipe: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    }
    let out = read(child.stdout.take().unwrap());
    let err = read(child.stderr.take().unwrap());
    let deadline = Instant::now() + limit;
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            timed_out = true;
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut text = out.join().unwrap_or_default() + &err.join().unwrap_or_default();
    if timed_out {
        text.push_str(&format!("\n{script} killed after {limit:?}\n"));
    }
    (status.is_some_and(|s| s.success()), text)
}

/// An `nginx` of the test's own: the shipped config template with the test's port and nodes,
/// run in the foreground as the current user, everything under its own prefix folder.
pub(crate) struct Nginx {
    child: Child,
    pub(crate) port: u16,
    prefix: PathBuf,
}

impl Nginx {
    /// Starts nginx with `template` (a file of `examples/chat/nginx/`) on a free port, in front
    /// of `upstreams` (ports on 127.0.0.1).
    pub(crate) fn start(template: &str, upstreams: &[u16]) -> Self {
        let port = free_port();
        let prefix =
            std::env::temp_dir().join(format!("sio-chat-nginx-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&prefix).unwrap();
        // Workers of an nginx started as root run as `nobody`: they must be able to enter it.
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&prefix, std::fs::Permissions::from_mode(0o755)).unwrap();
        let template_path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("nginx")
            .join(template);
        let conf = configure(
            &std::fs::read_to_string(&template_path).unwrap(),
            port,
            upstreams,
        );
        let conf_path = prefix.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let bin = if Path::new("/usr/sbin/nginx").exists() {
            "/usr/sbin/nginx"
        } else {
            "nginx"
        };
        let child = Command::new(bin)
            .arg("-p")
            .arg(&prefix)
            .arg("-e")
            .arg(prefix.join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .spawn()
            .expect("nginx is not installed (scripts/test installs it)");
        let nginx = Nginx {
            child,
            port,
            prefix,
        };
        wait_listening(port, "nginx");
        nginx
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// nginx's error log, for a failing test's output.
    pub(crate) fn error_log(&self) -> String {
        std::fs::read_to_string(self.prefix.join("error.log")).unwrap_or_default()
    }
}

/// The template with its `listen` line and its upstream servers (between `# servers` and
/// `# end servers`) replaced.
fn configure(template: &str, port: u16, upstreams: &[u16]) -> String {
    let mut out = String::new();
    let mut in_servers = false;
    for line in template.lines() {
        let indent = &line[..line.len() - line.trim_start().len()];
        match line.trim() {
            "# servers" => {
                in_servers = true;
                out.push_str(line);
                out.push('\n');
                for upstream in upstreams {
                    out.push_str(&format!("{indent}server 127.0.0.1:{upstream};\n"));
                }
            }
            "# end servers" => {
                in_servers = false;
                out.push_str(line);
                out.push('\n');
            }
            _ if in_servers => {}
            l if l.starts_with("listen ") => {
                out.push_str(&format!("{indent}listen 127.0.0.1:{port};\n"));
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    assert!(!in_servers, "the template has no `# end servers`");
    out
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers (a SIGKILL would leave them running).
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.prefix);
    }
}

/// A Node script driven over its standard streams: the test writes commands to its stdin and
/// reads the lines it prints; it is killed when the guard drops.
pub(crate) struct Script {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Every line printed so far (stdout and stderr), for a failing test's message.
    pub(crate) output: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Script {
    /// Starts `node script args...` in the tests' npm folder.
    pub(crate) fn start(script: &str, args: &[String]) -> Self {
        let js = js_dir();
        let mut child = Command::new("node")
            .arg(js.join(script))
            .args(args)
            .current_dir(&js)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot run node");
        let (tx, lines) = mpsc::channel();
        let output = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let pipes: [Box<dyn std::io::Read + Send>; 2] = [
            Box::new(child.stdout.take().unwrap()),
            Box::new(child.stderr.take().unwrap()),
        ];
        for pipe in pipes {
            let (tx, output) = (tx.clone(), output.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    output.lock().unwrap().push_str(&format!("{line}\n"));
                    let _ = tx.send(line);
                }
            });
        }
        Script {
            child,
            lines,
            output,
        }
    }

    /// Waits at most `limit` for a line starting with `prefix`; the rest of that line.
    pub(crate) fn wait_for(&self, prefix: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.trim().to_owned();
                    }
                }
                Err(_) => panic!(
                    "no `{prefix}` line within {limit:?}; the script printed:\n{}",
                    self.output.lock().unwrap()
                ),
            }
        }
    }

    /// Writes one line to the script's stdin.
    pub(crate) fn send(&mut self, line: &str) {
        use std::io::Write as _;
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
