//! ACL 1.0 on the broker (`aclEnable=true`): every request checked by [`crate::acl`] before it
//! runs, and the ACL admin requests of RocketMQ 4.9.x:
//!
//! | code | request | answer |
//! |---|---|---|
//! | 50 | UPDATE_AND_CREATE_ACL_CONFIG: header `accessKey`, `secretKey`, `whiteRemoteAddress`, `admin`, `defaultTopicPerm`, `defaultGroupPerm`, `topicPerms`, `groupPerms` (comma-joined) | 0; 209 with the reason |
//! | 51 | DELETE_ACL_CONFIG: header `accessKey` | 0; 210 when the key is unknown |
//! | 52 | GET_BROKER_CLUSTER_ACL_INFO | 0, header `version`, `allAclFileVersion`, `brokerName`, `brokerAddr`, `clusterName` |
//! | 53 | UPDATE_GLOBAL_WHITE_ADDRS_CONFIG: header `globalWhiteAddrs` (comma-joined), `aclFileFullPath` | 0; 211 |
//!
//! The files themselves belong to the driver, which reads them at start and whenever they
//! change ([`Broker::handle_acl_files`]). A change by request is applied at once and handed to
//! the driver to write ([`BrokerOutput::WriteAclFile`]), which answers the request once the file
//! is written (the failure answer when it could not be, and reads the files again). An existing
//! account is changed in the file that holds it; a new one goes to the first (default) file;
//! each change bumps that file's `dataVersion`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use super::{Broker, BrokerOutput};
use crate::acl::{AccountConfig, AclConfigError, AclDataVersion, AclFile, PlainAcl};
use crate::remoting::codes::{request, response};
use crate::remoting::RemotingCommand;
use crate::store::SegmentStorage;
use crate::ConnId;

/// 4.x ACL admin failures (these numbers mean POP codes in 5.x).
pub mod codes {
    pub const UPDATE_AND_CREATE_ACL_CONFIG_FAILED: i32 = 209;
    pub const DELETE_ACL_CONFIG_FAILED: i32 = 210;
    pub const UPDATE_GLOBAL_WHITE_ADDRS_CONFIG_FAILED: i32 = 211;
}

/// The ACL files as last read (path, contents) and what they compile to.
#[derive(Debug, Default)]
pub(super) struct AclState {
    files: Vec<(String, AclFile)>,
    compiled: PlainAcl,
}

/// The driver's answer to a request that changed an ACL file: what to send once it is written.
#[derive(Clone, Debug, PartialEq)]
pub struct AclWriteAnswer {
    pub conn: ConnId,
    pub success: RemotingCommand,
    pub failure: RemotingCommand,
}

fn data_version_json(v: Option<AclDataVersion>) -> String {
    let v = v.unwrap_or_default();
    format!(
        "{{\"counter\":{},\"stateVersion\":0,\"timestamp\":{}}}",
        v.counter, v.timestamp_ms
    )
}

/// `Res=Perm` entries of an ACL admin request (`checkResourcePerms`).
fn check_resource_perms(entries: &[String]) -> Result<(), String> {
    for entry in entries {
        let parts: Vec<&str> = entry.split('=').collect();
        if parts.len() != 2 {
            return Err(format!(
                "Parse Resource format error for {entry}.\nThe expected resource format is 'Res=Perm'. For example: topicA=SUB"
            ));
        }
        if !matches!(parts[1].trim(), "SUB" | "PUB" | "SUB|PUB" | "PUB|SUB") {
            return Err(format!(
                "Parse resource permission error for {entry}.\nThe expected permissions are 'SUB' or 'PUB' or 'SUB|PUB' or 'PUB|SUB'."
            ));
        }
    }
    Ok(())
}

fn comma_list(text: Option<&str>) -> Option<Vec<String>> {
    text.map(|t| {
        t.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    })
}

impl<S: SegmentStorage> Broker<S> {
    /// The ACL files (path, contents; the default file first), read by the driver at start and
    /// whenever they change. A file that does not parse or compile leaves the ACL as it was.
    pub fn handle_acl_files(&mut self, files: Vec<(String, String)>) -> Result<(), AclConfigError> {
        let mut parsed = Vec::with_capacity(files.len());
        for (path, text) in files {
            let file = AclFile::parse(&text).map_err(|e| AclConfigError(format!("{path}: {e}")))?;
            parsed.push((path, file));
        }
        let compiled = PlainAcl::build(parsed.iter().map(|(_, f)| f))?;
        self.acl = AclState {
            files: parsed,
            compiled,
        };
        Ok(())
    }

    /// The answer when ACL refuses `command` from `conn`, `None` when it may run.
    pub(super) fn acl_refusal(
        &self,
        conn: ConnId,
        command: &RemotingCommand,
    ) -> Option<RemotingCommand> {
        let peer = self
            .peers
            .get(&conn)
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |p| p.ip());
        let denied = self.acl.compiled.check(command, peer).err()?;
        Some(RemotingCommand::response_to(
            command,
            response::SYSTEM_ERROR,
            Some(denied.remark),
        ))
    }
    /// Codes 50–53. `None`: answered once the driver has written the file.
    pub(super) fn handle_acl_admin(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        req: &RemotingCommand,
    ) -> Option<RemotingCommand> {
        let fail =
            |code: i32, remark: String| Some(RemotingCommand::response_to(req, code, Some(remark)));
        match req.code {
            request::UPDATE_AND_CREATE_ACL_CONFIG => {
                let failed = codes::UPDATE_AND_CREATE_ACL_CONFIG_FAILED;
                let Some(key) = req.ext("accessKey").filter(|k| !k.is_empty()) else {
                    return fail(failed, "the custom field <accessKey> is null".to_owned());
                };
                let secret = req.ext("secretKey").unwrap_or_default();
                if key.chars().count() <= 6 || secret.chars().count() <= 6 {
                    return fail(
                        failed,
                        format!("The accessKey={key} and secretKey={secret} cannot be null and length should longer than 6"),
                    );
                }
                let topic_perms = comma_list(req.ext("topicPerms"));
                let group_perms = comma_list(req.ext("groupPerms"));
                for perms in [&topic_perms, &group_perms].into_iter().flatten() {
                    if let Err(reason) = check_resource_perms(perms) {
                        return fail(failed, reason);
                    }
                }
                let mut files = self.acl.files.clone();
                if files.is_empty() {
                    return fail(failed, format!("The accesskey[{key}] corresponding to accessConfig has been updated failed."));
                }
                let holder = files
                    .iter()
                    .position(|(_, f)| f.accounts.iter().any(|a| a.access_key == key))
                    .unwrap_or(0);
                let file = &mut files[holder].1;
                let index = match file.accounts.iter().position(|a| a.access_key == key) {
                    Some(i) => i,
                    None => {
                        file.accounts.push(AccountConfig {
                            access_key: key.to_owned(),
                            ..AccountConfig::default()
                        });
                        file.accounts.len() - 1
                    }
                };
                let account = &mut file.accounts[index];
                account.secret_key = secret.to_owned();
                if let Some(w) = req.ext("whiteRemoteAddress") {
                    account.white_remote_address = Some(w.to_owned());
                }
                if let Some(admin) = req.ext("admin") {
                    account.admin = admin.eq_ignore_ascii_case("true");
                }
                if let Some(p) = req.ext("defaultTopicPerm") {
                    account.default_topic_perm = Some(p.to_owned());
                }
                if let Some(p) = req.ext("defaultGroupPerm") {
                    account.default_group_perm = Some(p.to_owned());
                }
                if let Some(p) = topic_perms {
                    account.topic_perms = p;
                }
                if let Some(p) = group_perms {
                    account.group_perms = p;
                }
                let failure = format!(
                    "The accesskey[{key}] corresponding to accessConfig has been updated failed."
                );
                self.change_acl_file(now_ms, conn, req, files, holder, (failed, failure))
            }
            request::DELETE_ACL_CONFIG => {
                let failed = codes::DELETE_ACL_CONFIG_FAILED;
                let key = req.ext("accessKey").unwrap_or_default();
                let failure = format!(
                    "The accesskey[{key}] corresponding to accessConfig has been deleted failed."
                );
                let mut files = self.acl.files.clone();
                let Some(holder) = files
                    .iter()
                    .position(|(_, f)| f.accounts.iter().any(|a| a.access_key == key))
                else {
                    return fail(failed, failure);
                };
                files[holder].1.accounts.retain(|a| a.access_key != key);
                self.change_acl_file(now_ms, conn, req, files, holder, (failed, failure))
            }
            request::UPDATE_GLOBAL_WHITE_ADDRS_CONFIG => {
                let failed = codes::UPDATE_GLOBAL_WHITE_ADDRS_CONFIG_FAILED;
                let addrs = req.ext("globalWhiteAddrs").unwrap_or_default();
                let failure = format!("The globalWhiteAddresses[{addrs}] has been updated failed.");
                let Some(path) = req.ext("aclFileFullPath") else {
                    return fail(
                        response::SYSTEM_ERROR,
                        "the custom field <aclFileFullPath> is null".to_owned(),
                    );
                };
                let mut files = self.acl.files.clone();
                let Some(holder) = files.iter().position(|(p, _)| p == path) else {
                    return fail(failed, failure);
                };
                files[holder].1.global_white_remote_addresses =
                    comma_list(Some(addrs)).unwrap_or_default();
                self.change_acl_file(now_ms, conn, req, files, holder, (failed, failure))
            }
            _ => {
                // GET_BROKER_CLUSTER_ACL_INFO.
                let all: BTreeMap<&str, String> = self
                    .acl
                    .files
                    .iter()
                    .map(|(p, f)| (p.as_str(), data_version_json(f.data_version)))
                    .collect();
                let all_json = format!(
                    "{{{}}}",
                    all.iter()
                        .map(|(p, v)| format!("{}:{v}", serde_json::Value::from(*p)))
                        .collect::<Vec<_>>()
                        .join(",")
                );
                let version =
                    data_version_json(self.acl.files.first().and_then(|(_, f)| f.data_version));
                Some(
                    RemotingCommand::response_to(req, response::SUCCESS, None)
                        .with_ext("version", version)
                        .with_ext("allAclFileVersion", all_json)
                        .with_ext("brokerName", self.config.broker_name.as_str())
                        .with_ext("brokerAddr", self.identity().broker_addr)
                        .with_ext("clusterName", self.config.broker_cluster_name.as_str()),
                )
            }
        }
    }

    /// Applies changed files (file `changed` gets a new data version), and asks the driver to
    /// write it before answering.
    fn change_acl_file(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        req: &RemotingCommand,
        mut files: Vec<(String, AclFile)>,
        changed: usize,
        (failed_code, failure): (i32, String),
    ) -> Option<RemotingCommand> {
        let file = &mut files[changed].1;
        let counter = file.data_version.map_or(0, |v| v.counter) + 1;
        file.data_version = Some(AclDataVersion {
            counter,
            timestamp_ms: now_ms as i64,
        });
        let compiled = match PlainAcl::build(files.iter().map(|(_, f)| f)) {
            Ok(c) => c,
            Err(e) => {
                return Some(RemotingCommand::response_to(req, failed_code, Some(e.0)));
            }
        };
        let (path, contents) = (files[changed].0.clone(), files[changed].1.to_yaml());
        self.acl = AclState { files, compiled };
        if !req.is_oneway() {
            self.outputs.push_back(BrokerOutput::WriteAclFile {
                path,
                contents,
                answer: Some(AclWriteAnswer {
                    conn,
                    success: RemotingCommand::response_to(req, response::SUCCESS, None),
                    failure: RemotingCommand::response_to(req, failed_code, Some(failure)),
                }),
            });
        } else {
            self.outputs.push_back(BrokerOutput::WriteAclFile {
                path,
                contents,
                answer: None,
            });
        }
        None
    }
}
