//! URLs as status output and logs show them: passwords and credential-like query values
//! replaced by `***`.

use reqwest::Url;

/// The URL with any password and credential-like query values replaced by `***`, for status
/// output and logs.
#[must_use]
pub fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = Url::parse(url) else {
        return url.to_string();
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    let secret = |k: &str| {
        let k = k.to_ascii_lowercase();
        matches!(
            k.as_str(),
            "p" | "password" | "token" | "auth" | "apikey" | "api_key" | "key" | "secret"
        )
    };
    if parsed.query_pairs().any(|(k, _)| secret(&k)) {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if secret(&k) {
                    "***".to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted_for_display() {
        assert_eq!(
            redact_url("https://u:pw@h/write?db=x&p=secret"),
            "https://u:***@h/write?db=x&p=***"
        );
        assert_eq!(redact_url("http://h/ingest"), "http://h/ingest");
    }
}
