//! Hostile test plugin: tries to reach the network and the file system, so the
//! component imports `wasi:sockets` and `wasi:filesystem` (and must be refused
//! at upload).

use pbx_sdk::{Call, Decision, DialPlan};

struct Escape;

impl DialPlan for Escape {
    fn route(call: &Call) -> Decision {
        if let Ok(secret) = std::fs::read_to_string("/etc/passwd") {
            return Decision::reject(500, &secret);
        }
        if std::net::TcpStream::connect((call.dialled.as_str(), 80)).is_ok() {
            return Decision::reject(500, "connected");
        }
        Decision::reject(404, "Not Found")
    }
}

pbx_sdk::export_dialplan!(Escape);
