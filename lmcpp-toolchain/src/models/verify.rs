//! Re-hashing stored blobs: a corrupt one is deleted (with the hub-cache snapshot entries
//! that name it) so the next pull fetches it again.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use super::error::Error;
use super::hub::HubRepo;
use super::store::{ModelStore, delete_file};
use crate::digest::Sha256;
use crate::download::sha256_file;
use crate::error::Result;
use crate::progress::ProgressEvent;

/// Outcome of re-hashing one blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum VerifyStatus {
    /// The content matches its name.
    Ok,
    /// The content does not match; the blob was deleted so the next pull fetches it again.
    Corrupt {
        /// The digest found.
        found: String,
    },
    /// A ref points at a blob that is not there.
    Missing,
}

/// One entry of [`ModelStore::verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct VerifyReport {
    /// The blob's expected digest.
    pub sha256: String,
    /// The blob.
    pub blob: PathBuf,
    /// The references pointing at it.
    pub sources: Vec<String>,
    /// What re-hashing found.
    pub status: VerifyStatus,
}

impl ModelStore {
    /// Re-hashes every referenced blob. Corrupt blobs are deleted (their refs stay, so the
    /// next pull downloads them again).
    pub async fn verify(&self) -> Result<Vec<VerifyReport>> {
        let mut out = Vec::new();
        for sha256 in self.referenced_digests()?.into_keys() {
            out.push(self.verify_digest(&sha256).await?);
        }
        Ok(out)
    }

    /// Re-hashes one blob (see [`ModelStore::resolve`] to get its digest from what a user
    /// typed); a corrupt one is deleted, with the hub-cache snapshot entries that name it.
    /// No other blob is read or touched. In a hub cache written without symlinks, where
    /// the Python client keeps the file in the snapshot only, that file is the one checked.
    pub async fn verify_digest(&self, sha256: &str) -> Result<VerifyReport> {
        let sha256 = String::from(Sha256::parse(sha256)?);
        let _blob = self.lock_blob(&sha256).await?;
        let sources = self
            .referenced_digests()?
            .remove(&sha256)
            .unwrap_or_default();
        let refs = self.all_refs()?;
        let blob = refs
            .iter()
            .find(|r| r.uses(&sha256))
            .map_or_else(|| self.blob_path(&sha256), |r| self.ref_blob(r, &sha256));
        let snapshots: Vec<PathBuf> = refs
            .iter()
            .filter_map(|r| Some((HubRepo::at(r.hub_dir.clone()?), r.commit.as_deref()?, r)))
            .flat_map(|(repo, commit, r)| {
                r.files()
                    .into_iter()
                    .filter(|(_, sha, _)| *sha == sha256)
                    .map(|(file, _, _)| repo.snapshot_file(commit, file))
                    .collect::<Vec<_>>()
            })
            .collect();
        let blob = if blob.is_file() {
            blob
        } else {
            snapshots
                .iter()
                .find(|p| p.is_file())
                .cloned()
                .unwrap_or(blob)
        };
        if sources.is_empty() && !blob.is_file() {
            return Err(Error::Unknown {
                query: sha256,
                root: self.inner.root.clone(),
            }
            .into());
        }
        self.inner.progress.event(ProgressEvent::Stage {
            name: format!("verifying {}", blob.display()),
        });
        let status = if !blob.is_file() {
            VerifyStatus::Missing
        } else {
            let (found, _) = sha256_file(&blob).await?;
            if found == sha256 {
                VerifyStatus::Ok
            } else {
                delete_file(&blob)?;
                // A snapshot entry is a link to the blob, now broken, or (without
                // symlinks) a hard link or copy that may hold the same bad bytes.
                for entry in &snapshots {
                    delete_file(entry)?;
                }
                VerifyStatus::Corrupt { found }
            }
        };
        Ok(VerifyReport {
            sha256,
            blob,
            sources,
            status,
        })
    }

    /// Referenced digests and the sources naming each.
    fn referenced_digests(&self) -> Result<BTreeMap<String, Vec<String>>> {
        let mut by_sha: BTreeMap<String, Vec<String>> = Default::default();
        for r in self.all_refs()? {
            for (_, sha, _) in r.files() {
                let sources = by_sha.entry(sha.to_owned()).or_default();
                if !sources.contains(&r.source) {
                    sources.push(r.source.clone());
                }
            }
        }
        Ok(by_sha)
    }
}
