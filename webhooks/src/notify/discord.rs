//! Discord: the Slack payload to the webhook's Slack-compatible endpoint (`<webhook>/slack`).

use url::Url;

/// `url` with `/slack` appended to its path unless it already ends so (query kept).
pub(super) fn slack_endpoint(mut url: Url) -> Url {
    let path = url.path().trim_end_matches('/');
    if !path.ends_with("/slack") {
        let path = format!("{path}/slack");
        url.set_path(&path);
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_once() {
        let u = |s: &str| slack_endpoint(Url::parse(s).expect("test URL")).to_string();
        assert_eq!(
            u("https://discord.com/api/webhooks/1/abc"),
            "https://discord.com/api/webhooks/1/abc/slack"
        );
        assert_eq!(
            u("https://discord.com/api/webhooks/1/abc/slack"),
            "https://discord.com/api/webhooks/1/abc/slack"
        );
        assert_eq!(
            u("https://discord.com/api/webhooks/1/abc/?wait=true"),
            "https://discord.com/api/webhooks/1/abc/slack?wait=true"
        );
    }
}
