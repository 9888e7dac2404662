//! Pulling from Hugging Face: choosing the repository's files and learning their digests,
//! finding them already in the hub cache, and downloading them into it.

use super::error::Error;
use super::hf;
use super::hub::{self, HubRepo};
use super::options::PullOptions;
use super::pick::{self, Chosen, DefaultRule};
use super::pull::{FetchPlan, PulledModel, base_name};
use super::refs::{RefFile, StoredRef, now};
use super::source::{HfSelector, HfSource, ModelSource};
use super::store::ModelStore;
use crate::digest::Sha256;
use crate::download::{Content, DownloadSpec, sha256_file};
use crate::error::{IoContext, Result};
use crate::lock::lock_exclusive;
use crate::progress::{ProgressEvent, no_progress};

/// The files of a Hugging Face model, with what the hub said about them.
pub(super) struct HfPlan {
    parts: Vec<Chosen>,
    mmproj: Option<Chosen>,
    commit: Option<String>,
    headers: Vec<(String, String)>,
}

/// A Hugging Face model whose every file has a digest, and the commit they come from.
pub(super) struct HubPlan {
    parts: Vec<(Chosen, String)>,
    mmproj: Option<(Chosen, String)>,
    commit: String,
    headers: Vec<(String, String)>,
}

impl HfPlan {
    /// The hub-cache plan when every digest and the commit are known; else, for a single
    /// file, the plan of a download into lmcpp's area (hashed while streaming).
    pub(super) fn into_hub_or_single(
        self,
        src: &HfSource,
        endpoint: &str,
    ) -> Result<std::result::Result<HubPlan, FetchPlan>> {
        let with_sha = |c: &Chosen| c.sha256.clone().map(|s| (c.clone(), s));
        let parts: Option<Vec<_>> = self.parts.iter().map(with_sha).collect();
        let mmproj = self.mmproj.as_ref().map(with_sha);
        if let (Some(parts), Some(commit), false) =
            (parts, self.commit.clone(), matches!(mmproj, Some(None)))
        {
            return Ok(Ok(HubPlan {
                parts,
                mmproj: mmproj.flatten(),
                commit,
                headers: self.headers,
            }));
        }
        match (self.parts.as_slice(), &self.mmproj) {
            ([one], None) => Ok(Err(FetchPlan {
                url: hf::resolve_url(endpoint, src, &one.path),
                file_name: base_name(&one.path).to_owned(),
                sha256: one.sha256.clone(),
                headers: self.headers,
                commit: self.commit,
                repo_file: Some(one.path.clone()),
            })),
            _ => Err(Error::HubFileUnverifiable {
                url: hf::resolve_url(
                    endpoint,
                    src,
                    self.parts.first().map_or("", |c| c.path.as_str()),
                ),
            }
            .into()),
        }
    }
}

impl ModelStore {
    /// Downloads every file of `plan` into the hub cache's blobs, then publishes their
    /// snapshot links and the revision's ref, then lmcpp's ref.
    ///
    /// Every blob's lock is held from before its download until the refs are written, so
    /// a removal never deletes a blob between its download and its links. Links are
    /// published only once every blob is there: a reader never sees part of a split model.
    pub(super) async fn pull_into_hub(
        &self,
        source: &ModelSource,
        src: &HfSource,
        key: &str,
        plan: HubPlan,
        opts: &PullOptions,
    ) -> Result<PulledModel> {
        let progress = &self.inner.progress;
        let repo = HubRepo::new(&self.inner.hub, &src.repo);
        let files: Vec<(&Chosen, &str)> = plan
            .parts
            .iter()
            .chain(plan.mmproj.iter())
            .map(|(c, sha)| (c, sha.as_str()))
            .collect();
        // Every blob's locks up front, in digest order (the order every multi-blob holder
        // uses, so two of them never wait on each other crosswise).
        let mut shas: Vec<&str> = files.iter().map(|(_, sha)| *sha).collect();
        shas.sort_unstable();
        shas.dedup();
        let mut guards = Vec::new();
        for sha in shas {
            guards.push(self.lock_blob(sha).await?);
            // The other hub clients' lock for the same blob, so nobody fetches it twice.
            guards.push(
                lock_exclusive(&repo.download_lock(sha), self.inner.lock_timeout, progress).await?,
            );
        }
        let mut transferred = 0;
        let mut etag = None;
        let mut sizes = Vec::new();
        for (i, (file, sha)) in files.iter().enumerate() {
            let dest = repo.blob(sha);
            // A blob is named by its verified digest (by lmcpp or the other hub clients);
            // one whose size disagrees with the listing is handed to the downloader, which
            // re-hashes it and replaces it when it does not match.
            let present = std::fs::metadata(&dest)
                .ok()
                .filter(|m| m.is_file() && file.size.is_none_or(|s| s == m.len()));
            let size = match present {
                Some(m) => m.len(),
                None => {
                    let spec = DownloadSpec {
                        url: hf::resolve_url(&self.inner.endpoint, src, &file.path),
                        dest,
                        expected_sha256: Some((*sha).to_owned()),
                        headers: plan.headers.clone(),
                        content: Content::Gguf,
                    };
                    let done = self.inner.downloader.fetch(&spec, progress).await?;
                    transferred += done.bytes_transferred;
                    if i == 0 {
                        etag = done.etag;
                    }
                    done.size
                }
            };
            sizes.push(size);
        }
        for (file, sha) in &files {
            repo.link(&plan.commit, &file.path, sha)?;
        }
        repo.write_ref(&src.revision, &plan.commit)?;

        let ref_file = |i: usize| RefFile {
            path: files[i].0.path.clone(),
            sha256: files[i].1.to_owned(),
            size: sizes[i],
        };
        let n = plan.parts.len();
        let (first, first_sha) = files[0];
        let reference = StoredRef {
            source: source.to_string(),
            key: key.to_owned(),
            url: hf::resolve_url(&self.inner.endpoint, src, &first.path),
            file_name: base_name(&first.path).to_owned(),
            sha256: first_sha.to_owned(),
            size: sizes[0],
            etag,
            commit: Some(plan.commit.clone()),
            pulled_at: now(),
            hub_dir: Some(repo.dir().to_path_buf()),
            repo_file: Some(first.path.clone()),
            parts: (1..n).map(ref_file).collect(),
            mmproj: plan.mmproj.as_ref().map(|_| ref_file(n)),
        };
        self.publish_ref(&reference)?;
        drop(guards);
        progress.event(ProgressEvent::Done);
        self.model_from_ref(source, &reference, opts, transferred)
            .ok_or_else(|| {
                Error::FileMissing {
                    path: repo.snapshot_file(&plan.commit, &first.path),
                }
                .into()
            })
    }

    /// The model `src` names, when the hub cache already holds all of its files (placed by
    /// lmcpp, llama.cpp or `huggingface_hub`); records an lmcpp ref for it. No network.
    ///
    /// Unless offline, `owner/repo` alone is taken from the cache only as its `Q4_K_M`
    /// file: the cache may hold other files of the repository but not the one the hub
    /// would pick. The digests are the blobs' names; `verify` re-hashes them. A snapshot
    /// file that is a copy, not a link (a cache written without symlinks, as on Windows
    /// without developer mode), is hashed here, once: the ref recorded for it keeps the
    /// digest.
    pub(super) async fn found_in_hub_cache(
        &self,
        source: &ModelSource,
        src: &HfSource,
        key: &str,
        expected: Option<&str>,
        opts: &PullOptions,
    ) -> Result<Option<PulledModel>> {
        let repo = HubRepo::new(&self.inner.hub, &src.repo);
        let Some(commit) = repo.commit_of(&src.revision) else {
            return Ok(None);
        };
        let entries = repo.scan(&commit);
        let rule = if self.inner.offline || opts.cache_only {
            DefaultRule::Preference
        } else {
            DefaultRule::FirstOnly
        };
        let Ok(mut sel) = pick::select(src, &entries, !opts.no_mmproj, rule) else {
            return Ok(None);
        };
        for c in sel.parts.iter_mut().chain(sel.mmproj.iter_mut()) {
            if c.sha256.is_none() {
                let file = repo.snapshot_file(&commit, &c.path);
                c.sha256 = sha256_file(&file).await.ok().map(|(sha, _)| sha);
            }
        }
        let known = |c: &Chosen| -> Option<RefFile> {
            Some(RefFile {
                path: c.path.clone(),
                sha256: c.sha256.clone()?,
                size: c.size?,
            })
        };
        let Some(parts) = sel.parts.iter().map(known).collect::<Option<Vec<_>>>() else {
            return Ok(None);
        };
        let mmproj = match &sel.mmproj {
            Some(c) => match known(c) {
                Some(f) => Some(f),
                None => return Ok(None),
            },
            None => None,
        };
        let Some((first, rest)) = parts.split_first() else {
            return Ok(None);
        };
        if expected.is_some_and(|e| e != first.sha256) {
            return Ok(None);
        }
        // A pick made only because the network is off is not remembered: online, the same
        // reference means what the hub picks.
        let remember = rule == DefaultRule::FirstOnly || src.selector != HfSelector::Default;
        let reference = StoredRef {
            source: source.to_string(),
            key: key.to_owned(),
            url: hf::resolve_url(&self.inner.endpoint, src, &first.path),
            file_name: base_name(&first.path).to_owned(),
            sha256: first.sha256.clone(),
            size: first.size,
            etag: None,
            commit: Some(commit),
            pulled_at: now(),
            hub_dir: Some(repo.dir().to_path_buf()),
            repo_file: Some(first.path.clone()),
            parts: rest.to_vec(),
            mmproj,
        };
        if remember {
            self.publish_ref(&reference)?;
        }
        Ok(self.model_from_ref(source, &reference, opts, 0))
    }

    /// Chooses the files of `src` (listing the repository unless one plain file is named
    /// and no projector is wanted) and learns their digests and the revision's commit,
    /// asking the resolve URL's first hop (`X-Linked-Etag`, `X-Repo-Commit`) until both
    /// are known.
    pub(super) async fn plan_hf(
        &self,
        src: &HfSource,
        expected: Option<&str>,
        opts: &PullOptions,
    ) -> Result<HfPlan> {
        let endpoint = &self.inner.endpoint;
        let headers: Vec<(String, String)> = self
            .inner
            .token
            .iter()
            .map(|t| ("Authorization".to_owned(), t.bearer()))
            .collect();
        let entries = match &src.selector {
            HfSelector::File(f) if opts.no_mmproj && pick::split_part(f).is_none() => {
                vec![hf::TreeEntry::file(f.clone(), None, None)]
            }
            _ => self.list_repo(src, &headers).await?,
        };
        let mut sel = pick::select(src, &entries, !opts.no_mmproj, DefaultRule::Preference)?;
        if let (Some(e), Some(first)) = (expected, sel.parts.first_mut()) {
            first.sha256 = Some(e.to_owned());
        }
        let mut commit = hub::is_commit(&src.revision).then(|| src.revision.to_ascii_lowercase());
        for file in sel.parts.iter_mut().chain(sel.mmproj.iter_mut()) {
            if file.sha256.is_some() && commit.is_some() {
                continue;
            }
            let url = hf::resolve_url(endpoint, src, &file.path);
            let probe = self.inner.downloader.probe(&url, &headers).await?;
            if file.sha256.is_none() {
                file.sha256 = probe
                    .first_header("x-linked-etag")
                    .and_then(|v| Sha256::parse(v.trim().trim_start_matches("W/")).ok())
                    .map(String::from);
            }
            if commit.is_none() {
                commit = probe
                    .first_header("x-repo-commit")
                    .map(str::trim)
                    .filter(|c| hub::is_commit(c))
                    .map(str::to_ascii_lowercase);
            }
        }
        Ok(HfPlan {
            parts: sel.parts,
            mmproj: sel.mmproj,
            commit,
            headers,
        })
    }

    /// Downloads and parses the repository's file listing.
    async fn list_repo(
        &self,
        src: &HfSource,
        headers: &[(String, String)],
    ) -> Result<Vec<hf::TreeEntry>> {
        let url = hf::tree_url(&self.inner.endpoint, src);
        let dir = tempfile::Builder::new()
            .prefix(".listing-")
            .tempdir_in(self.inner.root.join("downloads"))
            .ctx(
                "create temporary directory in",
                self.inner.root.join("downloads"),
            )?;
        let dest = dir.path().join("tree.json");
        let spec = DownloadSpec {
            url: url.clone(),
            dest: dest.clone(),
            expected_sha256: None,
            headers: headers.to_vec(),
            content: Content::Any,
        };
        // A listing is tiny; its byte counts would only confuse a progress bar.
        self.inner.downloader.fetch(&spec, &no_progress()).await?;
        let text = std::fs::read(&dest).ctx("read", &dest)?;
        serde_json::from_slice(&text).map_err(|e| {
            crate::download::error::Error::Http {
                url,
                message: format!("the repository listing is not the expected JSON: {e}"),
            }
            .into()
        })
    }
}
