"""The browser chat page (Gradio, mounted on the API's own FastAPI app at /chat).

It talks to the server's OpenAI-compatible API over loopback like any client, so the page goes
through the same keys, rate limits, queue, request log and metrics as everyone else. It streams,
keeps the multi-turn history, shows the routing record of each answer, lets the user override the
model/adapter, and exports the conversation as JSON.
"""

import json
import os
import time
from datetime import datetime
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: no phoning home

AUTO = "auto (router decides)"


def build_chat_page(api_base: str, models: list[str], export_dir: Path):
    import gradio as gr
    import openai

    def respond(message, history, model, temperature, max_tokens, api_key):
        """Stream one answer: yields (history, routing panel) as pieces arrive."""
        history = list(history or []) + [{"role": "user", "content": message},
                                         {"role": "assistant", "content": ""}]
        client = openai.OpenAI(base_url=api_base, api_key=api_key or "none", max_retries=0)
        started, first, routing, usage = time.perf_counter(), None, {}, None
        try:
            stream = client.chat.completions.create(
                model="auto" if model == AUTO else model, messages=history[:-1], max_tokens=int(max_tokens),
                temperature=float(temperature), stream=True, stream_options={"include_usage": True})
            for chunk in stream:
                routing = (chunk.model_extra or {}).get("cogumi") or routing
                usage = chunk.usage or usage
                if chunk.choices and chunk.choices[0].delta.content:
                    first = first or time.perf_counter()
                    history[-1]["content"] += chunk.choices[0].delta.content
                    yield history, routing, ""
        except openai.OpenAIError as err:
            history[-1]["content"] = f"⚠️ {err}"
            yield history, {"error": str(err)}, message
            return
        elapsed = time.perf_counter() - started
        tokens = usage.completion_tokens if usage else None
        seen_by_page = {"ttft_ms": round(((first or time.perf_counter()) - started) * 1000, 1),
                        "tokens": tokens, "tokens_per_s": round(tokens / elapsed, 1) if tokens else None}
        yield history, {**routing, "page": seen_by_page}, ""

    def export(history):
        export_dir.mkdir(parents=True, exist_ok=True)
        path = export_dir / f"conversation-{datetime.now():%Y%m%d-%H%M%S}.json"
        path.write_text(json.dumps({"messages": history or []}, indent=2, ensure_ascii=False))
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
                model = gr.Dropdown([AUTO, *models], value=AUTO, label="model / adapter override")
                temperature = gr.Slider(0, 1.5, value=0.7, step=0.05, label="temperature")
                max_tokens = gr.Slider(8, 512, value=128, step=8, label="max tokens", elem_id="cogumi-max-tokens")
                api_key = gr.Textbox(label="API key (if the server requires one)", type="password")
                routing = gr.JSON(label="routing (who answered, how sure, timings)", elem_id="cogumi-routing")
        inputs = [question, chatbot, model, temperature, max_tokens, api_key]
        question.submit(respond, inputs, [chatbot, routing, question])
        send.click(respond, inputs, [chatbot, routing, question])
        clear.click(lambda: ([], {}), None, [chatbot, routing])
        export_button.click(export, chatbot, exported)
    return page


def mount_chat_page(app, api_base: str, models: list[str], export_dir: Path):
    """Mount the page at /chat on `app` (and redirect / there)."""
    import gradio as gr
    from fastapi.responses import RedirectResponse

    page = build_chat_page(api_base, models, export_dir)
    app.add_api_route("/", lambda: RedirectResponse("/chat/"), methods=["GET"], include_in_schema=False)
    return gr.mount_gradio_app(app, page, path="/chat", ssr_mode=False, footer_links=[],
                               allowed_paths=[str(export_dir)])
