//! The web console: five static files built into the binary, served on the
//! API listener at `/` (the page) and `/console/…` (its scripts and style).
//!
//! The console is plain HTML, CSS and three ES modules with no build step and no
//! dependencies: `app.js`; `api.js`, the client it calls the API through,
//! generated from the OpenAPI document (module [`crate::console_client`]);
//! and `phone.js`, the browser phone (SIP over secure WebSocket, RFC 7118,
//! with WebRTC audio; the CSP lets it connect to `wss:` endpoints). It
//! calls the same `/api/v1` routes as any client, with a
//! cookie session (`POST /api/v1/auth/login` with `"cookie": true`: an
//! `HttpOnly` token and a CSRF value it sends back as `X-CSRF-Token`). It
//! writes every value into the page as text, never as markup, and the page's
//! Content-Security-Policy allows only its own script and style, no inline
//! code, no frames.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("../console/index.html");
const SCRIPT: &str = include_str!("../console/app.js");
/// The API client `app.js` imports, generated from the OpenAPI document
/// (module [`crate::console_client`]).
const CLIENT: &str = include_str!("../console/api.js");
const STYLE: &str = include_str!("../console/app.css");
/// The browser phone: a SIP user agent over secure WebSocket with WebRTC
/// audio, signed in with short-lived credentials.
const PHONE: &str = include_str!("../console/phone.js");

/// What every console response carries.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; media-src 'self' blob:; connect-src 'self' wss:; \
form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

/// `GET /`: the console page.
pub(crate) async fn page() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

/// `GET /console/{file}`: its scripts and style.
pub(crate) async fn file(Path(name): Path<String>) -> Response {
    match name.as_str() {
        "app.js" => asset("text/javascript; charset=utf-8", SCRIPT),
        "api.js" => asset("text/javascript; charset=utf-8", CLIENT),
        "phone.js" => asset("text/javascript; charset=utf-8", PHONE),
        "app.css" => asset("text/css; charset=utf-8", STYLE),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Bytes the console adds to the binary.
pub const CONSOLE_BYTES: usize =
    INDEX.len() + SCRIPT.len() + CLIENT.len() + STYLE.len() + PHONE.len();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_files_and_no_inline_code() {
        assert!(INDEX.contains(r#"src="/console/app.js""#));
        assert!(INDEX.contains(r#"href="/console/app.css""#));
        assert!(!INDEX.contains("<script>"), "no inline script");
        assert!(!INDEX.contains(" on"), "no inline handlers");
        // The script never turns data into markup.
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!SCRIPT.contains(sink), "{sink} in app.js");
            assert!(!CLIENT.contains(sink), "{sink} in api.js");
            assert!(!PHONE.contains(sink), "{sink} in phone.js");
        }
        const { assert!(CONSOLE_BYTES < 256 * 1024) };
    }
}
