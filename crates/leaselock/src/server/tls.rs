//! How a connection to the coordination server is secured, from the address's `sslmode` and
//! `sslrootcert` (libpq's names). TLS itself is behind the `tls` feature (OpenSSL, through
//! `postgres-openssl`); without it an address that asks for TLS is refused, never downgraded.
//!
//! | `sslmode` | here |
//! |---|---|
//! | absent, `disable`, `allow`, `prefer` | no TLS: a connection that may fall back to plain text protects nothing, so `prefer` is not tried |
//! | `require`, `verify-full` | TLS, the server's certificate verified against `sslrootcert` (else the system's roots) and its name against the host — stricter than libpq's `require`, which verifies nothing |
//! | `verify-ca` | TLS, the certificate verified, the name not |

use std::path::PathBuf;

/// What the address asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Tls {
    /// No TLS.
    Off,
    /// TLS, the certificate verified against `root` (the system's roots when `None`) and, if
    /// `verify_host`, the host name.
    Verified {
        root: Option<PathBuf>,
        verify_host: bool,
    },
}

/// The largest `sslrootcert` file read.
#[cfg(feature = "tls")]
const MAX_ROOT_FILE: u64 = 1024 * 1024;

/// Takes `sslmode` and `sslrootcert` out of `url`'s query (the client library knows neither
/// `verify-*` nor `sslrootcert`): the URL left and what they ask for.
///
/// # Errors
///
/// A reason, for an unknown `sslmode` or a repeated key.
pub(super) fn split(url: &str) -> Result<(String, Tls), String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), Tls::Off));
    };
    let (mut mode, mut root) = (None, None);
    let mut kept = Vec::new();
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        // Decoded as the client library decodes it (and libpq): `ssl%6Dode` is `sslmode`.
        let key = decode(key)?;
        let slot = match key.as_str() {
            "sslmode" => &mut mode,
            "sslrootcert" => &mut root,
            _ => {
                kept.push(pair);
                continue;
            }
        };
        if slot.replace(decode(value)?).is_some() {
            return Err(format!("it gives {key} twice"));
        }
    }
    let tls = match mode.as_deref() {
        None | Some("disable" | "allow" | "prefer") => {
            if root.is_some() {
                return Err(
                    "it gives sslrootcert without sslmode=require, verify-ca or verify-full"
                        .to_owned(),
                );
            }
            Tls::Off
        }
        Some(m @ ("require" | "verify-ca" | "verify-full")) => Tls::Verified {
            root: root.map(PathBuf::from),
            verify_host: m != "verify-ca",
        },
        Some(other) => {
            return Err(format!(
                "sslmode={other:?} is not one of disable, allow, prefer, require, verify-ca, \
                 verify-full"
            ));
        }
    };
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, tls))
}

/// `value` with its `%XX` escapes decoded.
fn decode(value: &str) -> Result<String, String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = value
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("{value:?} holds a broken %-escape"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{value:?} is not UTF-8 once decoded"))
}

/// The connector for `tls`, its root certificates read now.
///
/// # Errors
///
/// A reason, when the roots cannot be read or are not PEM certificates.
#[cfg(feature = "tls")]
pub(super) fn connector(tls: &Tls) -> Result<Option<postgres_openssl::MakeTlsConnector>, String> {
    use std::io::Read;

    use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
    use openssl::x509::X509;
    use openssl::x509::store::X509StoreBuilder;

    let Tls::Verified { root, verify_host } = tls else {
        return Ok(None);
    };
    let tls_error = |e: openssl::error::ErrorStack| format!("TLS cannot be set up: {e}");
    let mut builder = SslConnector::builder(SslMethod::tls_client()).map_err(tls_error)?;
    builder.set_verify(SslVerifyMode::PEER);
    if let Some(path) = root {
        let shown = path.display();
        // A regular file only: a FIFO or a device would block or never end.
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => return Err(format!("sslrootcert {shown} is not a regular file")),
            Err(e) => return Err(format!("sslrootcert {shown} cannot be read: {e}")),
        }
        let mut pem = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_ROOT_FILE + 1).read_to_end(&mut pem))
            .map_err(|e| format!("sslrootcert {shown} cannot be read: {e}"))?;
        if pem.len() as u64 > MAX_ROOT_FILE {
            return Err(format!("sslrootcert {shown} is larger than 1 MiB"));
        }
        let certs = X509::stack_from_pem(&pem)
            .map_err(|e| format!("sslrootcert {shown} is not PEM certificates: {e}"))?;
        if certs.is_empty() {
            return Err(format!("sslrootcert {shown} holds no certificate"));
        }
        // Only these roots: not the system's as well.
        let mut store = X509StoreBuilder::new().map_err(tls_error)?;
        for cert in certs {
            store.add_cert(cert).map_err(tls_error)?;
        }
        builder.set_cert_store(store.build());
    }
    let mut connector = postgres_openssl::MakeTlsConnector::new(builder.build());
    if !verify_host {
        connector.set_callback(|config, _| {
            config.set_verify_hostname(false);
            Ok(())
        });
    }
    Ok(Some(connector))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_roots_are_taken_out_of_the_address() {
        let ok = |url: &str| split(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(
            ok("postgres://u@h/d"),
            ("postgres://u@h/d".to_owned(), Tls::Off)
        );
        assert_eq!(
            ok("postgres://u@h/d?sslmode=prefer&application_name=x"),
            ("postgres://u@h/d?application_name=x".to_owned(), Tls::Off)
        );
        assert_eq!(
            ok("postgres://u@h/d?sslmode=require&sslrootcert=%2Ftmp%2Fca%20x.pem"),
            (
                "postgres://u@h/d".to_owned(),
                Tls::Verified {
                    root: Some(PathBuf::from("/tmp/ca x.pem")),
                    verify_host: true
                }
            )
        );
        assert_eq!(
            ok("postgres://u@h/d?ssl%6Dode=require").1,
            Tls::Verified {
                root: None,
                verify_host: true
            }
        );
        assert_eq!(
            ok("postgres://u@h/d?sslmode=verify-ca").1,
            Tls::Verified {
                root: None,
                verify_host: false
            }
        );
        for bad in [
            "postgres://u@h/d?sslmode=always",
            "postgres://u@h/d?sslmode=require&sslmode=disable",
            "postgres://u@h/d?sslrootcert=/ca.pem",
            "postgres://u@h/d?sslmode=require&sslrootcert=%zz",
            "postgres://u@h/d?sslmode=disable&ssl%6Dode=require",
            "postgres://u@h/d?ssl%72ootcert=/ca.pem",
        ] {
            assert!(split(bad).is_err(), "{bad}");
        }
    }
}
