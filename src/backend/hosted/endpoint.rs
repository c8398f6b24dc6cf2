//! Endpoint URLs as the user writes them: shown without their password, and checked
//! before a credential goes to them.
//!
//! `http://user:password@host` is how a user gives a server behind basic auth its
//! password: reqwest sends it as the `Authorization` header and takes it out of the URL
//! of the request (so transport errors do not hold it), but the URL as given still reaches
//! logs, errors and the `endpoint` property unless it is shown through [`redacted`].

use std::borrow::Cow;

use url::Url;

use super::http::is_loopback;
use crate::backend::ConfigError;

/// What stands for the `user:password` of an endpoint wherever it is shown.
const HIDDEN: &str = "***";

/// `text` (an endpoint, several separated by commas, or text that does not even parse)
/// with the user and password of each URL hidden.
///
/// Each URL's userinfo is taken to run from its `://` to the last '@' before the next
/// URL: a password with an unescaped '/' or ',' is hidden whole, at the price of hiding
/// a path up to a '@' in it too (rare in an endpoint, and only in what is shown).
pub fn redacted(text: &str) -> Cow<'_, str> {
    if !text.contains('@') {
        return Cow::Borrowed(text);
    }
    let parts: Vec<Cow<'_, str>> = text
        .split("://")
        .map(|part| match part.rfind('@') {
            Some(at) => Cow::Owned(format!("{HIDDEN}{}", &part[at..])),
            None => Cow::Borrowed(part),
        })
        .collect();
    Cow::Owned(parts.join("://"))
}

/// Whether `url` carries credentials of its own (basic auth).
fn has_userinfo(url: &Url) -> bool {
    !url.username().is_empty() || url.password().is_some()
}

/// Checks where the credentials would go: never in clear text to another machine unless
/// `allow_insecure_http` (anyone on the way could read them; a LAN the user trusts is
/// theirs to allow), and never as two `Authorization` headers at once.
///
/// `endpoints` are those that receive `key`; one with a password is a credential too.
/// Without either, plain http goes anywhere, as a Cog fleet on a LAN does.
pub fn check_credentials(
    endpoints: &[Url],
    key: bool,
    allow_insecure_http: bool,
) -> Result<(), ConfigError> {
    if key && endpoints.iter().any(has_userinfo) {
        return Err(ConfigError::Invalid {
            property: "endpoint",
            why: "a user:password in the endpoint and an API key would both be sent as the \
                  Authorization header: give only one of them"
                .into(),
        });
    }
    if allow_insecure_http {
        return Ok(());
    }
    let exposed = endpoints
        .iter()
        .find(|url| url.scheme() == "http" && !is_loopback(url) && (key || has_userinfo(url)));
    match exposed {
        Some(url) => Err(ConfigError::PlainHttp {
            credential: if key {
                "the API key"
            } else {
                "the endpoint's password"
            },
            host: url[url::Position::BeforeHost..url::Position::AfterPort].to_owned(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden_in_urls_lists_and_unparsable_text() {
        for (given, shown) in [
            ("http://gpu1:5000", "http://gpu1:5000"),
            ("http://u:pw@gpu1:5000/", "http://***@gpu1:5000/"),
            ("https://token@api.example/v1", "https://***@api.example/v1"),
            (
                "http://u:pw@gpu1:5000,http://gpu2:5000,http://v:pw2@gpu3",
                "http://***@gpu1:5000,http://gpu2:5000,http://***@gpu3",
            ),
            // Not URLs: an unescaped '/', '@' or ',' in the password, or no scheme.
            ("http://u:p/w@gpu1:port", "http://***@gpu1:port"),
            ("http://u:p@w@gpu1", "http://***@gpu1"),
            (
                "http://u:p,w@gpu1,http://gpu2",
                "http://***@gpu1,http://gpu2",
            ),
            ("u:pw@gpu1:5000", "***@gpu1:5000"),
        ] {
            assert_eq!(redacted(given), shown, "{given}");
        }
    }

    fn urls(list: &[&str]) -> Vec<Url> {
        list.iter().map(|u| Url::parse(u).unwrap()).collect()
    }

    #[test]
    fn credentials_go_over_plain_http_only_to_this_machine_or_when_allowed() {
        let lan = urls(&["http://gpu1:5000", "http://10.0.0.2:5000"]);
        assert_eq!(check_credentials(&lan, false, false), Ok(()));
        let error = check_credentials(&lan, true, false).unwrap_err();
        assert_eq!(
            error.to_string(),
            "refusing to send the API key over plain http to gpu1:5000, another machine: \
             use an https endpoint, or set allow-insecure-http=true if the network on the way \
             is trusted"
        );
        assert_eq!(check_credentials(&lan, true, true), Ok(()));

        let with_password = urls(&["http://gpu2:5000", "http://u:pw@10.0.0.2:5000"]);
        let error = check_credentials(&with_password, false, false).unwrap_err();
        assert!(
            error.to_string().starts_with(
                "refusing to send the endpoint's password over plain http to 10.0.0.2:5000"
            ),
            "{error}"
        );
        assert_eq!(check_credentials(&with_password, false, true), Ok(()));

        for safe in [
            "https://api.replicate.com",
            "http://127.0.0.1:8080",
            "http://localhost:5000",
            "http://u:pw@[::1]:5000",
        ] {
            assert_eq!(
                check_credentials(&urls(&[safe]), !safe.contains('@'), false),
                Ok(())
            );
        }
    }

    #[test]
    fn a_password_and_a_key_are_not_both_sent() {
        let error = check_credentials(&urls(&["https://u:pw@proxy.example"]), true, true);
        assert!(
            error
                .unwrap_err()
                .to_string()
                .contains("give only one of them"),
            "one Authorization header"
        );
    }
}
