//! A blocking API for programs without an async runtime: the same builder, typed requests
//! and responses, and iterators for streams, driven by a small runtime of its own.
//!
//! ```no_run
//! use lmcpp::types::openai::chat::{ChatCompletionRequest, ChatMessage};
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let running = lmcpp::Lmcpp::builder().model("demo").start_blocking()?;
//!     let client = running.client();
//!     let request = ChatCompletionRequest::new(vec![ChatMessage::user("Hello!")]).max_tokens(16);
//!     for chunk in client.chat_completions_stream(&request)? {
//!         for choice in chunk?.choices {
//!             print!("{}", choice.delta.content.unwrap_or_default());
//!         }
//!     }
//!     running.stop()?; // also happens on drop
//!     Ok(())
//! }
//! ```
//!
//! Do not call it from inside an async runtime (it would block that runtime's thread);
//! async code uses [`crate::Lmcpp`] directly.

use std::future::Future;
use std::process::ExitStatus;
use std::sync::Arc;

use futures_util::StreamExt;
use lmcpp_server::{Client as AsyncClient, EventStream};
use lmcpp_types::native::completion::{CompletionChunk, CompletionRequest, CompletionResponse};
use lmcpp_types::native::tokenize::{TokenizeRequest, TokenizeResponse};
use lmcpp_types::openai::chat::{
    ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse,
};
use lmcpp_types::openai::models::ModelList;
use tokio::runtime::Runtime;

use crate::facade::{Error, LmcppBuilder, Running as AsyncRunning};

/// A server started by [`LmcppBuilder::start_blocking`]; stopped on drop.
#[derive(Debug)]
pub struct Running {
    inner: AsyncRunning,
    rt: Arc<Runtime>,
}

impl LmcppBuilder {
    /// Like [`LmcppBuilder::start`], blocking the calling thread; the returned handle and
    /// its clients run on a runtime of their own.
    pub fn start_blocking(self) -> Result<Running, Error> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| Error::Runtime(e.to_string()))?;
        // On the heap: the start's future is larger than a Windows main thread's stack
        // allows in a debug build.
        let inner = rt.block_on(Box::pin(self.start()))?;
        Ok(Running {
            inner,
            rt: Arc::new(rt),
        })
    }
}

impl Running {
    /// A blocking client for the server.
    pub fn client(&self) -> Client {
        Client {
            inner: self.inner.client(),
            rt: self.rt.clone(),
        }
    }

    /// The async handle, for what the blocking API does not wrap.
    pub fn inner(&self) -> &AsyncRunning {
        &self.inner
    }

    /// Stops the server (SIGTERM, then SIGKILL after the grace period).
    pub fn stop(self) -> Result<ExitStatus, Error> {
        let Running { inner, rt } = self;
        Ok(rt.block_on(inner.server.stop())?)
    }
}

/// A blocking typed client. Any endpoint of the async [`lmcpp_server::Client`] is reachable
/// through [`Client::block_on`]; the common ones have methods of their own.
#[derive(Debug, Clone)]
pub struct Client {
    inner: AsyncClient,
    rt: Arc<Runtime>,
}

impl Client {
    /// Runs one call of the async client to completion, e.g.
    /// `client.block_on(|c| async move { c.props().await })`.
    pub fn block_on<'a, F, Fut, T>(&'a self, call: F) -> T
    where
        F: FnOnce(&'a AsyncClient) -> Fut,
        Fut: Future<Output = T>,
    {
        self.rt.block_on(call(&self.inner))
    }

    /// `POST /completion`.
    pub fn completion(&self, req: &CompletionRequest) -> lmcpp_server::Result<CompletionResponse> {
        self.rt.block_on(self.inner.completion(req))
    }

    /// `POST /completion`, streamed.
    pub fn completion_stream(
        &self,
        req: &CompletionRequest,
    ) -> lmcpp_server::Result<Stream<CompletionChunk>> {
        let stream = self.rt.block_on(self.inner.completion_stream(req))?;
        Ok(self.iter(stream))
    }

    /// `POST /v1/chat/completions`.
    pub fn chat_completions(
        &self,
        req: &ChatCompletionRequest,
    ) -> lmcpp_server::Result<ChatCompletionResponse> {
        self.rt.block_on(self.inner.chat_completions(req))
    }

    /// `POST /v1/chat/completions`, streamed.
    pub fn chat_completions_stream(
        &self,
        req: &ChatCompletionRequest,
    ) -> lmcpp_server::Result<Stream<ChatCompletionChunk>> {
        let stream = self.rt.block_on(self.inner.chat_completions_stream(req))?;
        Ok(self.iter(stream))
    }

    /// `POST /tokenize`.
    pub fn tokenize(&self, req: &TokenizeRequest) -> lmcpp_server::Result<TokenizeResponse> {
        self.rt.block_on(self.inner.tokenize(req))
    }

    /// `GET /v1/models`.
    pub fn models(&self) -> lmcpp_server::Result<ModelList> {
        self.rt.block_on(self.inner.models())
    }

    fn iter<T>(&self, stream: EventStream<T>) -> Stream<T> {
        Stream {
            inner: stream,
            rt: self.rt.clone(),
        }
    }
}

/// A streamed answer as an iterator of typed chunks; dropping it cancels the generation.
#[derive(Debug)]
pub struct Stream<T> {
    inner: EventStream<T>,
    rt: Arc<Runtime>,
}

impl<T: serde::de::DeserializeOwned> Iterator for Stream<T> {
    type Item = lmcpp_server::Result<T>;

    fn next(&mut self) -> Option<Self::Item> {
        self.rt.block_on(self.inner.next())
    }
}
