"""The browser chat page (Gradio, mounted on the API's own FastAPI app at /chat).

It talks to the server's OpenAI-compatible API over loopback like any client, so the page goes
through the same keys, rate limits, queue, request log and metrics as everyone else. It streams,
keeps the multi-turn history, shows the routing record of each answer, lets the user override the
model/adapter and the mode, and exports the conversation (with each answer's routing) as JSON.
"""

import json
import os
import time
from datetime import datetime
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: no phoning home

AUTO = "auto (router decides)"
SERVER_MODE = "server default"


def route_summary(routing: dict) -> str:
    """One line under the conversation: who answered the last question, how sure, and the swap cost."""
    if not routing or "route" not in routing:
        return ""
    confidence = routing.get("confidence")
    parts = [f"**route** {routing['route']}" + (f" ({routing['adapter']})" if routing.get("adapter") else ""),
             f"**domain** {routing.get('domain') or '–'}",
             f"**confidence** {confidence:.2f}" if isinstance(confidence, (int, float)) else "**confidence** –",
             f"**swap** {routing.get('timings', {}).get('swap_ms', 0):.1f} ms",
             f"**by** {routing.get('decided_by')}", f"**mode** {routing.get('mode') or '–'}"]
    return " · ".join(parts)


def build_chat_page(api_base: str, models: list[str], export_dir: Path):
    import gradio as gr
    import openai

    def respond(message, history, records, model, mode, temperature, max_tokens, api_key):
        """Stream one answer: yields (history, routing panel, summary, records) as pieces arrive."""
        history = list(history or []) + [{"role": "user", "content": message},
                                         {"role": "assistant", "content": ""}]
        client = openai.OpenAI(base_url=api_base, api_key=api_key or "none", max_retries=0)
        started, first, routing, usage = time.perf_counter(), None, {}, None
        options = {} if mode == SERVER_MODE else {"cogumi": {"mode": mode}}
        try:
            stream = client.chat.completions.create(
                model="auto" if model == AUTO else model, messages=history[:-1], max_tokens=int(max_tokens),
                temperature=float(temperature), stream=True, stream_options={"include_usage": True},
                extra_body=options or None)
            for chunk in stream:
                routing = (chunk.model_extra or {}).get("cogumi") or routing
                usage = chunk.usage or usage
                if chunk.choices and chunk.choices[0].delta.content:
                    first = first or time.perf_counter()
                    history[-1]["content"] += chunk.choices[0].delta.content
                    yield history, routing, "", records, ""
        except openai.OpenAIError as err:
            history[-1]["content"] = f"⚠️ {err}"
            yield history, {"error": str(err)}, "", records, message
            return
        elapsed = time.perf_counter() - started
        tokens = usage.completion_tokens if usage else None
        seen_by_page = {"ttft_ms": round(((first or time.perf_counter()) - started) * 1000, 1),
                        "tokens": tokens, "tokens_per_s": round(tokens / elapsed, 1) if tokens else None}
        routing = {**routing, "page": seen_by_page}
        yield history, routing, route_summary(routing), list(records or []) + [routing], ""

    def export(history, records):
        export_dir.mkdir(parents=True, exist_ok=True)
        path = export_dir / f"conversation-{datetime.now():%Y%m%d-%H%M%S}.json"
        path.write_text(json.dumps({"messages": history or [], "routing": records or []}, indent=2,
                                   ensure_ascii=False))
        return str(path)

    with gr.Blocks(title="Cogumi chat") as page:
        gr.Markdown("## Cogumi chat")
        with gr.Row():
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(label="conversation", height=420, elem_id="cogumi-chat")
                question = gr.Textbox(label="message", placeholder="Ask something and press Enter",
                                      elem_id="cogumi-input", lines=1)
                with gr.Row():
                    send = gr.Button("Send", variant="primary", elem_id="cogumi-send")
                    clear = gr.Button("New chat")
                    export_button = gr.Button("Export conversation", elem_id="cogumi-export")
                exported = gr.File(label="exported conversation", interactive=False)
            with gr.Column(scale=2):
                summary = gr.Markdown("", elem_id="cogumi-route")
                model = gr.Dropdown([AUTO, *models], value=AUTO, label="model / modifier override",
                                    elem_id="cogumi-model")
                mode = gr.Radio([SERVER_MODE, "speed", "balanced", "quality"], value=SERVER_MODE, label="mode",
                                elem_id="cogumi-mode")
                temperature = gr.Slider(0, 1.5, value=0.7, step=0.05, label="temperature")
                max_tokens = gr.Slider(8, 512, value=128, step=8, label="max tokens", elem_id="cogumi-max-tokens")
                api_key = gr.Textbox(label="API key (if the server requires one)", type="password")
                routing = gr.JSON(label="routing (who answered, how sure, timings)", elem_id="cogumi-routing")
        records = gr.State([])  # each answer's routing record, for the export
        inputs = [question, chatbot, records, model, mode, temperature, max_tokens, api_key]
        outputs = [chatbot, routing, summary, records, question]
        question.submit(respond, inputs, outputs)
        send.click(respond, inputs, outputs)
        clear.click(lambda: ([], {}, "", []), None, [chatbot, routing, summary, records])
        export_button.click(export, [chatbot, records], exported)
    return page


def mount_chat_page(app, api_base: str, models: list[str], export_dir: Path):
    """Mount the page at /chat on `app` (and redirect / there)."""
    import gradio as gr
    from fastapi.responses import RedirectResponse

    page = build_chat_page(api_base, models, export_dir)
    app.add_api_route("/", lambda: RedirectResponse("/chat/"), methods=["GET"], include_in_schema=False)
    return gr.mount_gradio_app(app, page, path="/chat", ssr_mode=False, footer_links=[],
                               allowed_paths=[str(export_dir)])
