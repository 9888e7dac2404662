//! One typed method per `llama-server` endpoint, on top of [`Client::request`] and
//! [`Client::stream`].

use http::Method;
use lmcpp_types::{
    anthropic::{CountTokensResponse, MessagesRequest, MessagesResponse, MessagesStreamEvent},
    health::HealthResponse,
    lora::{LoraAdaptersRequest, LoraAdaptersResponse},
    metrics::Metrics,
    native::{
        completion::{CompletionChunk, CompletionRequest, CompletionResponse},
        embedding::{EmbeddingRequest, EmbeddingResponse},
        infill::InfillRequest,
        rerank::{RerankRequest, RerankResponse},
        template::{ApplyTemplateRequest, ApplyTemplateResponse},
        tokenize::{DetokenizeRequest, DetokenizeResponse, TokenizeRequest, TokenizeResponse},
    },
    openai::{
        chat::{
            ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse, ChatControlRequest,
            ChatControlResponse, InputTokensResponse,
        },
        completions::{OaiCompletionChunk, OaiCompletionRequest, OaiCompletionResponse},
        embeddings::{OaiEmbeddingRequest, OaiEmbeddingResponse},
        models::ModelList,
    },
    props::{Props, PropsUpdate, SuccessResponse},
    responses::{ResponsesRequest, ResponsesResponse, ResponsesStreamEvent},
    router::{
        LoadModelRequest, ModelActionResponse, ModelsEvent, RouterModelList, UnloadModelRequest,
    },
    slots::{
        SlotEraseResponse, SlotFileRequest, SlotRestoreResponse, SlotSaveResponse, SlotsResponse,
    },
};

use crate::{
    answer::decode,
    client::Client,
    error::{Error, Result},
    stream::EventStream,
};

impl Client {
    /// `GET /health` (short health timeout). A loading server is [`Error::Api`] with 503.
    pub async fn health(&self) -> Result<HealthResponse> {
        decode("/health", &self.probe_health().await?)
    }

    /// `GET /props`.
    pub async fn props(&self) -> Result<Props> {
        self.get("/props").await
    }

    /// `POST /props` (the server needs `--props`).
    pub async fn set_props(&self, update: &PropsUpdate) -> Result<SuccessResponse> {
        self.post("/props", update).await
    }

    /// `POST /completion`.
    pub async fn completion(&self, req: &CompletionRequest) -> Result<CompletionResponse> {
        self.post("/completion", req).await
    }

    /// `POST /completion` streamed.
    pub async fn completion_stream(
        &self,
        req: &CompletionRequest,
    ) -> Result<EventStream<CompletionChunk>> {
        self.stream("/completion", req).await
    }

    /// `POST /infill`.
    pub async fn infill(&self, req: &InfillRequest) -> Result<CompletionResponse> {
        self.post("/infill", req).await
    }

    /// `POST /infill` streamed.
    pub async fn infill_stream(&self, req: &InfillRequest) -> Result<EventStream<CompletionChunk>> {
        self.stream("/infill", req).await
    }

    /// `POST /tokenize`.
    pub async fn tokenize(&self, req: &TokenizeRequest) -> Result<TokenizeResponse> {
        self.post("/tokenize", req).await
    }

    /// `POST /detokenize`.
    pub async fn detokenize(&self, req: &DetokenizeRequest) -> Result<DetokenizeResponse> {
        self.post("/detokenize", req).await
    }

    /// `POST /apply-template`.
    pub async fn apply_template(
        &self,
        req: &ApplyTemplateRequest,
    ) -> Result<ApplyTemplateResponse> {
        self.post("/apply-template", req).await
    }

    /// `POST /embedding` (the server needs `--embeddings`).
    pub async fn embedding(&self, req: &EmbeddingRequest) -> Result<EmbeddingResponse> {
        self.post("/embedding", req).await
    }

    /// `POST /reranking` (the server needs a reranker model and `--reranking`).
    pub async fn rerank(&self, req: &RerankRequest) -> Result<RerankResponse> {
        self.post("/reranking", req).await
    }

    /// `GET /slots`.
    pub async fn slots(&self) -> Result<SlotsResponse> {
        self.get("/slots").await
    }

    /// `POST /slots/{id}?action=save` (the server needs `--slot-save-path`).
    pub async fn slot_save(&self, id: u32, req: &SlotFileRequest) -> Result<SlotSaveResponse> {
        self.post(&format!("/slots/{id}?action=save"), req).await
    }

    /// `POST /slots/{id}?action=restore` (the server needs `--slot-save-path`).
    pub async fn slot_restore(
        &self,
        id: u32,
        req: &SlotFileRequest,
    ) -> Result<SlotRestoreResponse> {
        self.post(&format!("/slots/{id}?action=restore"), req).await
    }

    /// `POST /slots/{id}?action=erase`.
    pub async fn slot_erase(&self, id: u32) -> Result<SlotEraseResponse> {
        self.post(&format!("/slots/{id}?action=erase"), &serde_json::json!({}))
            .await
    }

    /// `GET /metrics` as Prometheus text (the server needs `--metrics`).
    pub async fn metrics_text(&self) -> Result<String> {
        let path = "/metrics";
        let raw = self.raw(Method::GET, path, None).await?;
        if !raw.status.is_success() {
            return Err(crate::answer::api_error_of(path, &raw));
        }
        Ok(String::from_utf8_lossy(&raw.body).into_owned())
    }

    /// `GET /metrics`, parsed.
    pub async fn metrics(&self) -> Result<Metrics> {
        let text = self.metrics_text().await?;
        Metrics::parse(&text).map_err(|e| Error::Decode {
            path: "/metrics".into(),
            snippet: text.chars().take(200).collect(),
            source: serde::de::Error::custom(e),
        })
    }

    /// `GET /lora-adapters`.
    pub async fn lora_adapters(&self) -> Result<LoraAdaptersResponse> {
        self.get("/lora-adapters").await
    }

    /// `POST /lora-adapters`; the answer is the server's JSON as is.
    pub async fn set_lora_adapters(&self, req: &LoraAdaptersRequest) -> Result<serde_json::Value> {
        self.post("/lora-adapters", req).await
    }

    /// `GET /v1/models`.
    pub async fn models(&self) -> Result<ModelList> {
        self.get("/v1/models").await
    }

    /// `POST /v1/completions`.
    pub async fn completions(&self, req: &OaiCompletionRequest) -> Result<OaiCompletionResponse> {
        self.post("/v1/completions", req).await
    }

    /// `POST /v1/completions` streamed.
    pub async fn completions_stream(
        &self,
        req: &OaiCompletionRequest,
    ) -> Result<EventStream<OaiCompletionChunk>> {
        self.stream("/v1/completions", req).await
    }

    /// `POST /v1/chat/completions`.
    pub async fn chat_completions(
        &self,
        req: &ChatCompletionRequest,
    ) -> Result<ChatCompletionResponse> {
        self.post("/v1/chat/completions", req).await
    }

    /// `POST /v1/chat/completions` streamed.
    pub async fn chat_completions_stream(
        &self,
        req: &ChatCompletionRequest,
    ) -> Result<EventStream<ChatCompletionChunk>> {
        self.stream("/v1/chat/completions", req).await
    }

    /// `POST /v1/chat/completions/input_tokens`: prompt tokens a chat request would use.
    pub async fn chat_input_tokens(
        &self,
        req: &ChatCompletionRequest,
    ) -> Result<InputTokensResponse> {
        self.post("/v1/chat/completions/input_tokens", req).await
    }

    /// `POST /v1/chat/completions/control`.
    pub async fn chat_control(&self, req: &ChatControlRequest) -> Result<ChatControlResponse> {
        self.post("/v1/chat/completions/control", req).await
    }

    /// `POST /v1/embeddings` (the server needs a pooling model or `--pooling`).
    pub async fn embeddings(&self, req: &OaiEmbeddingRequest) -> Result<OaiEmbeddingResponse> {
        self.post("/v1/embeddings", req).await
    }

    /// `POST /v1/responses`.
    pub async fn responses(&self, req: &ResponsesRequest) -> Result<ResponsesResponse> {
        self.post("/v1/responses", req).await
    }

    /// `POST /v1/responses` streamed.
    pub async fn responses_stream(
        &self,
        req: &ResponsesRequest,
    ) -> Result<EventStream<ResponsesStreamEvent>> {
        self.stream("/v1/responses", req).await
    }

    /// `POST /v1/responses/input_tokens`.
    pub async fn responses_input_tokens(
        &self,
        req: &ResponsesRequest,
    ) -> Result<InputTokensResponse> {
        self.post("/v1/responses/input_tokens", req).await
    }

    /// `POST /v1/messages` (Anthropic Messages API).
    pub async fn messages(&self, req: &MessagesRequest) -> Result<MessagesResponse> {
        self.post("/v1/messages", req).await
    }

    /// `POST /v1/messages` streamed.
    pub async fn messages_stream(
        &self,
        req: &MessagesRequest,
    ) -> Result<EventStream<MessagesStreamEvent>> {
        self.stream("/v1/messages", req).await
    }

    /// `POST /v1/messages/count_tokens`.
    pub async fn count_tokens(&self, req: &MessagesRequest) -> Result<CountTokensResponse> {
        self.post("/v1/messages/count_tokens", req).await
    }

    /// Router mode: `GET /models`.
    pub async fn router_models(&self) -> Result<RouterModelList> {
        self.get("/models").await
    }

    /// Router mode: `POST /models/load`.
    pub async fn load_model(&self, req: &LoadModelRequest) -> Result<ModelActionResponse> {
        self.post("/models/load", req).await
    }

    /// Router mode: `POST /models/unload`.
    pub async fn unload_model(&self, req: &UnloadModelRequest) -> Result<ModelActionResponse> {
        self.post("/models/unload", req).await
    }

    /// Router mode: `GET /models/sse`, each model's status changes as they happen
    /// (llama-server's router, and an lmcpp proxy in the same shape).
    pub async fn router_events(&self) -> Result<EventStream<ModelsEvent>> {
        self.stream_get("/models/sse").await
    }

    /// An lmcpp proxy's `GET /lmcpp/events`: what happens to its models, typed, as it
    /// happens (see [`Proxy::events`](crate::Proxy::events); a client that reads too
    /// slowly misses the oldest events).
    pub async fn proxy_events(&self) -> Result<EventStream<crate::ModelEvent>> {
        self.stream_get(crate::EVENTS_PATH).await
    }

    /// An lmcpp proxy's own metrics, `GET /lmcpp/metrics` (per model: requests, queue
    /// wait, load time, evictions, state), parsed; a model server's own are
    /// [`Client::metrics`] with `?model=`.
    pub async fn proxy_metrics(&self) -> Result<Metrics> {
        let path = crate::METRICS_PATH;
        let raw = self.raw(Method::GET, path, None).await?;
        if !raw.status.is_success() {
            return Err(crate::answer::api_error_of(path, &raw));
        }
        let text = String::from_utf8_lossy(&raw.body);
        Metrics::parse(&text).map_err(|e| Error::Decode {
            path: path.into(),
            snippet: text.chars().take(200).collect(),
            source: serde::de::Error::custom(e),
        })
    }
}
