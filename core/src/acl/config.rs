//! `plain_acl.yml`, RocketMQ's ACL 1.0 file, read and written.
//!
//! ```yaml
//! globalWhiteRemoteAddresses:        # addresses that need no account at all
//!   - 10.10.103.*
//! accounts:
//!   - accessKey: RocketMQ            # both longer than 6 characters
//!     secretKey: 12345678
//!     whiteRemoteAddress:            # this account's addresses need no signature
//!     admin: false                   # admin codes (create topic, …) need true
//!     defaultTopicPerm: DENY         # DENY | PUB | SUB | PUB|SUB; absent: DENY
//!     defaultGroupPerm: SUB
//!     topicPerms:
//!       - topicA=DENY
//!       - topicB=PUB|SUB
//!     groupPerms:
//!       - groupA=DENY
//! dataVersion:                       # written by the ACL admin requests
//!   - counter: 1
//!     timestamp: 1718000000000
//! ```
//!
//! Scalars are read as text whatever YAML makes of them (RocketMQ converts numbers to strings:
//! `secretKey: 12345678` is the string "12345678"). Unknown keys are ignored.

use yaml_rust2::{Yaml, YamlLoader};

/// One account as the file gives it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountConfig {
    pub access_key: String,
    pub secret_key: String,
    pub white_remote_address: Option<String>,
    pub admin: bool,
    pub default_topic_perm: Option<String>,
    pub default_group_perm: Option<String>,
    /// `name=PERM` entries.
    pub topic_perms: Vec<String>,
    pub group_perms: Vec<String>,
}

/// The file's data version (`[{counter, timestamp}]`), bumped by every admin change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AclDataVersion {
    pub counter: i64,
    pub timestamp_ms: i64,
}

/// A whole `plain_acl.yml`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AclFile {
    pub global_white_remote_addresses: Vec<String>,
    pub accounts: Vec<AccountConfig>,
    pub data_version: Option<AclDataVersion>,
}

fn scalar(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn list(y: &Yaml, key: &str) -> Result<Vec<String>, String> {
    match y {
        Yaml::Null | Yaml::BadValue => Ok(Vec::new()),
        Yaml::Array(items) => Ok(items.iter().filter_map(scalar).collect()),
        other => scalar(other)
            .map(|s| vec![s])
            .ok_or_else(|| format!("{key} must be a list")),
    }
}

impl AclFile {
    /// Parses the file's text; an empty file is an empty ACL.
    pub fn parse(text: &str) -> Result<Self, String> {
        let docs = YamlLoader::load_from_str(text).map_err(|e| format!("not YAML: {e}"))?;
        let Some(doc) = docs.first() else {
            return Ok(Self::default());
        };
        if !matches!(doc, Yaml::Hash(_) | Yaml::Null) {
            return Err("the top level must be a mapping".to_owned());
        }
        let mut file = AclFile {
            global_white_remote_addresses: list(
                &doc["globalWhiteRemoteAddresses"],
                "globalWhiteRemoteAddresses",
            )?,
            ..Self::default()
        };
        match &doc["accounts"] {
            Yaml::Null | Yaml::BadValue => {}
            Yaml::Array(accounts) => {
                for a in accounts {
                    if !matches!(a, Yaml::Hash(_)) {
                        return Err("every account must be a mapping".to_owned());
                    }
                    file.accounts.push(AccountConfig {
                        access_key: scalar(&a["accessKey"]).unwrap_or_default(),
                        secret_key: scalar(&a["secretKey"]).unwrap_or_default(),
                        white_remote_address: scalar(&a["whiteRemoteAddress"]),
                        admin: scalar(&a["admin"]).is_some_and(|s| s.eq_ignore_ascii_case("true")),
                        default_topic_perm: scalar(&a["defaultTopicPerm"]),
                        default_group_perm: scalar(&a["defaultGroupPerm"]),
                        topic_perms: list(&a["topicPerms"], "topicPerms")?,
                        group_perms: list(&a["groupPerms"], "groupPerms")?,
                    });
                }
            }
            _ => return Err("accounts must be a list".to_owned()),
        }
        if let Yaml::Array(versions) = &doc["dataVersion"] {
            if let Some(v) = versions.first() {
                let number = |k: &str| scalar(&v[k]).and_then(|s| s.parse().ok()).unwrap_or(0);
                file.data_version = Some(AclDataVersion {
                    counter: number("counter"),
                    timestamp_ms: number("timestamp"),
                });
            }
        }
        Ok(file)
    }

    /// The file's text, as the ACL admin requests write it (comments are not kept, as
    /// RocketMQ's rewrite does not keep them either).
    pub fn to_yaml(&self) -> String {
        let mut out = String::new();
        out.push_str("globalWhiteRemoteAddresses:\n");
        for a in &self.global_white_remote_addresses {
            out.push_str(&format!("  - {}\n", quoted(a)));
        }
        out.push_str("accounts:\n");
        for a in &self.accounts {
            out.push_str(&format!("  - accessKey: {}\n", quoted(&a.access_key)));
            out.push_str(&format!("    secretKey: {}\n", quoted(&a.secret_key)));
            if let Some(w) = &a.white_remote_address {
                out.push_str(&format!("    whiteRemoteAddress: {}\n", quoted(w)));
            }
            out.push_str(&format!("    admin: {}\n", a.admin));
            if let Some(p) = &a.default_topic_perm {
                out.push_str(&format!("    defaultTopicPerm: {}\n", quoted(p)));
            }
            if let Some(p) = &a.default_group_perm {
                out.push_str(&format!("    defaultGroupPerm: {}\n", quoted(p)));
            }
            for (key, perms) in [
                ("topicPerms", &a.topic_perms),
                ("groupPerms", &a.group_perms),
            ] {
                if !perms.is_empty() {
                    out.push_str(&format!("    {key}:\n"));
                    for p in perms {
                        out.push_str(&format!("      - {}\n", quoted(p)));
                    }
                }
            }
        }
        if let Some(v) = self.data_version {
            out.push_str(&format!(
                "dataVersion:\n  - counter: {}\n    timestamp: {}\n",
                v.counter, v.timestamp_ms
            ));
        }
        out
    }
}

/// A YAML double-quoted scalar: safe for `*`, `|`, `{`, `:` and anything else.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RocketMQ's distributed example (distribution/conf/plain_acl.yml), shape for shape.
    pub(crate) const EXAMPLE: &str = r#"
globalWhiteRemoteAddresses:
  - 10.10.103.*
  - 192.168.0.*

accounts:
  - accessKey: RocketMQ
    secretKey: 12345678
    whiteRemoteAddress:
    admin: false
    defaultTopicPerm: DENY
    defaultGroupPerm: SUB
    topicPerms:
      - topicA=DENY
      - topicB=PUB|SUB
      - topicC=SUB
    groupPerms:
      # the group should convert to retry topic
      - groupA=DENY
      - groupB=PUB|SUB
      - groupC=SUB

  - accessKey: rocketmq2
    secretKey: 12345678
    whiteRemoteAddress: 192.168.1.*
    # if it is admin, it could access all resources
    admin: true
"#;

    #[test]
    fn reads_rocketmqs_example_and_writes_it_back_the_same() {
        let file = AclFile::parse(EXAMPLE).unwrap();
        assert_eq!(
            file.global_white_remote_addresses,
            ["10.10.103.*", "192.168.0.*"]
        );
        assert_eq!(file.accounts.len(), 2);
        let a = &file.accounts[0];
        assert_eq!(
            (a.access_key.as_str(), a.secret_key.as_str()),
            ("RocketMQ", "12345678")
        );
        assert_eq!(a.white_remote_address, None);
        assert_eq!(
            a.topic_perms,
            ["topicA=DENY", "topicB=PUB|SUB", "topicC=SUB"]
        );
        assert!(file.accounts[1].admin);
        assert_eq!(AclFile::parse(&file.to_yaml()).unwrap(), file);
    }

    #[test]
    fn empty_and_malformed_files() {
        assert_eq!(AclFile::parse("").unwrap(), AclFile::default());
        assert!(AclFile::parse("accounts: {a: 1}").is_err());
        assert!(AclFile::parse("[1, 2]").is_err());
        assert!(AclFile::parse("accounts:\n  - [x\n").is_err());
    }
}
