"""The customer's chat tab: threads, messages, confirm gates, questions and feedback."""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Mapping
from typing import Any, cast

import gradio as gr

from graph.service import (
    StaleAnswerError,
)
from ui.app.base import _UIBase
from ui.app.common import (
    _CHAT_OUTPUTS,
    _STALE_NOTICE,
    CHAT_POLL_S,
    MAX_CHOICES,
    _refused,
)
from ui.app.render import (
    ChatView,
    _confirm_text,
    _question_choices,
    _question_text,
    decision_rows,
    example_prompts,
    render_messages,
    thread_label,
)
from ui.auth import (
    Account,
)
from ui.look import FEEDBACK_LABEL, turn_summary

__all__ = ["ChatTab"]

log = logging.getLogger(__name__)


class ChatTab(_UIBase):
    """The chat tab's handlers and layout."""

    def _own_thread(self, account: Account, thread_id: str | None) -> str | None:
        if not thread_id:
            return None
        if self.app.thread_owner(thread_id) != account.customer_id:
            raise _refused("Not allowed: this conversation belongs to another customer.")
        return thread_id

    def chat_view(self, account: Account, thread_id: str | None, notice: str = "") -> ChatView:
        """Read one thread of the customer (or the newest one) from the service."""
        assert account.customer_id is not None
        rows = self.app.list_threads(user_id=account.customer_id)
        threads = [(thread_label(r), str(r["thread_id"])) for r in rows]
        if thread_id is None and rows:
            thread_id = str(rows[0]["thread_id"])
        if thread_id is None:
            return ChatView(thread_id=None, threads=threads, notice=notice, staff=account.is_reviewer)
        snapshot = self.app.view(thread_id=thread_id, user_id=account.customer_id)
        messages, decisions, pending = snapshot.messages, snapshot.decisions, snapshot.pending
        describe = self._describer()
        chat, ids = render_messages(messages, decisions, pending=pending, describe=describe,
                                    staff=account.is_reviewer)
        return ChatView(
            thread_id=thread_id, chat=chat, ids=ids, decisions=decision_rows(decisions),
            threads=threads, notice=notice, staff=account.is_reviewer,
            summary=turn_summary(messages, decisions, describe),
            confirm=next((p for p in pending if p.kind == "confirm"), None),
            review=next((p for p in pending if p.kind == "review"), None),
            question=next((p for p in pending if p.kind == "question"), None),
            running=snapshot.running,
        )

    def chat_outputs(self, view: ChatView) -> tuple[Any, ...]:
        """Return the updates for the chat tab's outputs (see ``_build_chat``), in order."""
        gate = view.confirm
        choices = _question_choices(view.question)
        return (
            gr.Chatbot(value=cast(Any, view.chat)),
            gr.Dataframe(value=view.decisions or [["", "", "", ""]], visible=view.staff),
            gr.Column(visible=gate is not None),
            gr.Markdown(value=_confirm_text(gate, staff=view.staff) if gate else ""),
            gr.Markdown(
                value=("**A human reviewer is looking at this request.** You can leave this page; "
                       "the answer will appear here as soon as they decide.") if view.review else "",
                visible=view.review is not None,
            ),
            gr.Markdown(value=html.escape(view.notice), visible=bool(view.notice)),
            gr.Dropdown(choices=view.threads, value=view.thread_id),
            view.thread_id,
            view.ids,
            {"id": gate.id, "args_hash": gate.value.get("args_hash")} if gate else None,
            view.signature,
            # Poll while a reviewer decides and until the resumed turn has its guarded answer.
            gr.Timer(active=view.review is not None or view.running),
            # A question's choices are buttons, rendered by code from the interrupt's payload.
            gr.Column(visible=view.question is not None),
            gr.Markdown(value=_question_text(view.question) if view.question else ""),
            *[gr.Button(value=str(c.get("label", "")), visible=True) for c in choices],
            *[gr.Button(visible=False) for _ in range(MAX_CHOICES - len(choices))],
            {"id": view.question.id, "values": [str(c.get("value")) for c in choices]}
            if view.question else None,
            gr.Markdown(value=view.summary or "_No guard decisions yet._", visible=not view.staff),
        )

    def on_open_thread(self, thread_id: str | None, request: gr.Request) -> tuple[Any, ...]:
        """Show a thread the customer picked."""
        account = self.customer(request)
        with self._errors():
            return self.chat_outputs(self.chat_view(account, self._own_thread(account, thread_id)))

    def on_new_thread(self, request: gr.Request) -> tuple[Any, ...]:
        """Start a new conversation."""
        account = self.customer(request)
        assert account.customer_id is not None
        with self._errors():
            thread_id = self.app.new_thread(user_id=account.customer_id)
            return self.chat_outputs(self.chat_view(account, thread_id))

    def on_echo(self, text: str, chat: list[dict[str, Any]] | None) -> tuple[Any, ...]:
        """Show the customer's message at once while the agent works (no state change)."""
        text = (text or "").strip()
        if not text:
            return gr.skip(), gr.skip(), ""
        limit = self.app.input_limit
        if limit is not None and len(text) > limit:
            # Too long to be read: the text stays whole in the box, the send explains the limit.
            return gr.skip(), gr.skip(), text
        return [*(chat or []), {"role": "user", "content": text}], "", text

    def on_send(self, text: str, thread_id: str | None, request: gr.Request) -> tuple[Any, ...]:
        """Send a message on the current thread (a new one if none is open)."""
        account = self.customer(request)
        assert account.customer_id is not None
        text = (text or "").strip()
        with self._errors():
            thread_id = self._own_thread(account, thread_id)
            if not text:
                return self.chat_outputs(self.chat_view(account, thread_id))
            if thread_id is None:
                thread_id = self.app.new_thread(user_id=account.customer_id)
            result = self.app.send(thread_id=thread_id, user_id=account.customer_id, text=text)
            return self.chat_outputs(self.chat_view(account, thread_id, result.notice))

    def on_answer(self, action: str, thread_id: str | None, gate: Mapping[str, Any] | None,
                  request: gr.Request) -> tuple[Any, ...]:
        """Confirm or cancel the gate the customer is looking at (bound to its hash)."""
        account = self.customer(request)
        assert account.customer_id is not None
        with self._errors():
            thread_id = self._own_thread(account, thread_id)
            if thread_id is None or not gate:
                raise _refused("There is nothing to confirm.")
            try:
                self.app.answer_confirm(
                    thread_id=thread_id, user_id=account.customer_id, interrupt_id=str(gate["id"]),
                    action=action, args_hash=gate.get("args_hash"),
                )
            except StaleAnswerError as exc:
                return self._stale(account, thread_id, exc)
            return self.chat_outputs(self.chat_view(account, thread_id))

    def _stale(self, account: Account, thread_id: str, exc: StaleAnswerError) -> tuple[Any, ...]:
        """Show the thread as it is now, with a notice, when the page answered something already answered."""
        log.warning("refused: stale answer on thread %s: %s", thread_id, exc)
        return self.chat_outputs(self.chat_view(account, thread_id, _STALE_NOTICE))

    def on_choice(self, index: int, thread_id: str | None, question: Mapping[str, Any] | None,
                  request: gr.Request) -> tuple[Any, ...]:
        """Answer the question the customer is looking at with the choice they pressed."""
        account = self.customer(request)
        assert account.customer_id is not None
        with self._errors():
            thread_id = self._own_thread(account, thread_id)
            values = list((question or {}).get("values") or [])
            if thread_id is None or not question or not 0 <= index < len(values):
                raise _refused("There is no question to answer.")
            try:
                result = self.app.answer_question(
                    thread_id=thread_id, user_id=account.customer_id, interrupt_id=str(question["id"]),
                    value=values[index],
                )
            except StaleAnswerError as exc:
                return self._stale(account, thread_id, exc)
            return self.chat_outputs(self.chat_view(account, thread_id, result.notice))

    def _choice_handler(self, index: int) -> Callable[..., tuple[Any, ...]]:
        def choose(
            thread_id: str | None, question: dict[str, Any] | None, request: gr.Request
        ) -> tuple[Any, ...]:
            return self.on_choice(index, thread_id, question, request)

        return choose

    def _answer_handler(self, action: str) -> Callable[..., tuple[Any, ...]]:
        def answer(
            thread_id: str | None, gate: dict[str, Any] | None, request: gr.Request
        ) -> tuple[Any, ...]:
            return self.on_answer(action, thread_id, gate, request)

        return answer

    def on_poll(self, thread_id: str | None, signature: str | None, request: gr.Request) -> tuple[Any, ...]:
        """Refresh the chat while a reviewer decides; send nothing when nothing changed."""
        account = self.customer(request)
        with self._errors():
            view = self.chat_view(account, self._own_thread(account, thread_id))
        if view.signature == signature:
            return tuple(gr.skip() for _ in range(_CHAT_OUTPUTS))
        return self.chat_outputs(view)

    def on_example(self, index: int | None, request: gr.Request) -> str:
        """Put the picked example prompt (for this customer) into the message box."""
        account = self.customer(request)
        prompts = example_prompts(account.customer_id, plugin=self.app.services.plugin)
        return prompts[index] if isinstance(index, int) and 0 <= index < len(prompts) else ""

    def on_feedback(self, thread_id: str | None, ids: list[str | None] | None,
                    data: gr.LikeData, request: gr.Request) -> Any:
        """Store thumbs up/down for one answer at once, and open the box for a comment."""
        account = self.customer(request)
        assert account.customer_id is not None
        index = data.index[0] if isinstance(data.index, list | tuple) else data.index
        liked = data.liked
        if liked in (None, ""):
            return gr.skip(), gr.skip(), gr.skip()
        rating = 1 if liked is True or liked == "Like" else -1
        message_id = (ids or [None])[index] if ids and 0 <= int(index) < len(ids) else None
        with self._errors():
            thread_id = self._own_thread(account, thread_id)
            if thread_id is None:
                raise _refused("Open a conversation first.")
            feedback_id = self.app.add_feedback(thread_id=thread_id, user_id=account.customer_id,
                                                message_id=message_id, rating=rating)
        word = "helpful" if rating == 1 else "not helpful"
        return (gr.Column(visible=True),
                gr.Textbox(value="", label=f"You rated this answer {word}. Tell us more (optional)"),
                feedback_id)

    def on_feedback_comment(self, feedback_id: int | None, comment: str, request: gr.Request) -> Any:
        """Add the customer's comment to the rating they just gave, and close the box."""
        account = self.customer(request)
        assert account.customer_id is not None
        text = (comment or "").strip()
        if feedback_id is not None and text:
            with self._errors():
                self.app.comment_feedback(feedback_id=int(feedback_id), user_id=account.customer_id,
                                          comment=text[:2000])
        gr.Info("Thanks for the feedback.")
        return gr.Column(visible=False), "", None

    def _build_chat(self) -> tuple[Callable[..., tuple[Any, ...]], list[Any]]:
        """Lay out the chat tab; return the handler that fills it on page load, and its outputs."""
        with gr.Row():
            with gr.Column(scale=3):
                gr.Markdown(f"Model: **{html.escape(self.model_label)}**", elem_id="model-label")
                with gr.Row():
                    threads = gr.Dropdown(label="Conversations", choices=[], value=None, scale=4,
                                          elem_id="thread-select", interactive=True)
                    new = gr.Button("New conversation", scale=1, elem_id="new-thread")
                # No floating label: Gradio draws it over the first messages.
                chatbot = gr.Chatbot(label="Conversation", show_label=False, height=460, elem_id="chatbot",
                                     feedback_options=("Like", "Dislike"), layout="bubble",
                                     buttons=["copy", "copy_all"])
                review_md = gr.Markdown(visible=False, elem_id="review-notice")
                notice_md = gr.Markdown(visible=False, elem_id="chat-notice")
                with gr.Column(visible=False, elem_id="confirm-box") as confirm_box:
                    confirm_md = gr.Markdown(elem_id="confirm-message")
                    with gr.Row():
                        confirm = gr.Button("Confirm", variant="primary", elem_id="confirm-btn")
                        cancel = gr.Button("Cancel", variant="stop", elem_id="cancel-btn")
                with gr.Column(visible=False, elem_id="question-box") as question_box:
                    question_md = gr.Markdown(elem_id="question-message")
                    with gr.Row():
                        choice_buttons = [gr.Button(visible=False, elem_id=f"choice-btn-{i}")
                                          for i in range(MAX_CHOICES)]
                with gr.Row():
                    text = gr.Textbox(placeholder="Type a message and press Enter", show_label=False,
                                      scale=5, elem_id="chat-input")
                    send = gr.Button("Send", variant="primary", scale=1, elem_id="send-btn")
                examples = gr.Dataset(label="Try these (the offline planner understands them)", components=[text],
                                      samples=[[p] for p in example_prompts(None, plugin=self.app.services.plugin)],
                                      type="index", elem_id="examples")
                # A thumb stores the rating at once and opens this box for an optional comment.
                with gr.Column(visible=False, elem_id="feedback-box") as feedback_box:
                    comment = gr.Textbox(label=FEEDBACK_LABEL, max_lines=3, elem_id="feedback-comment")
                    with gr.Row():
                        send_comment = gr.Button("Send comment", size="sm", variant="primary",
                                                 elem_id="feedback-send")
                        skip_comment = gr.Button("No comment", size="sm", elem_id="feedback-skip")
            with gr.Column(scale=2):
                gr.Markdown("#### Safety checks (newest first)")
                summary = gr.Markdown(elem_id="decision-summary")
                decisions = gr.Dataframe(headers=["where", "layer", "action", "reason"],
                                         value=[["", "", "", ""]], interactive=False, wrap=True,
                                         column_widths=["34%", "22%", "16%", "28%"], elem_id="decisions",
                                         visible=False)
        thread_state = gr.State(None)
        ids_state = gr.State([])
        gate_state = gr.State(None)
        sig_state = gr.State("")
        pending_text = gr.State("")
        question_state = gr.State(None)
        feedback_state = gr.State(None)
        timer = gr.Timer(CHAT_POLL_S, active=False)
        outputs = [chatbot, decisions, confirm_box, confirm_md, review_md, notice_md, threads,
                   thread_state, ids_state, gate_state, sig_state, timer,
                   question_box, question_md, *choice_buttons, question_state, summary]
        private: dict[str, Any] = {"api_visibility": "private"}

        threads.input(self.on_open_thread, [threads], outputs, **private)
        new.click(self.on_new_thread, None, outputs, **private)
        for trigger in (text.submit, send.click):
            trigger(self.on_echo, [text, chatbot], [chatbot, text, pending_text], queue=False,
                    **private).then(self.on_send, [pending_text, thread_state], outputs, **private)
        for button, action in ((confirm, "confirm"), (cancel, "cancel")):
            button.click(self._answer_handler(action), [thread_state, gate_state], outputs, **private)
        for index, choice in enumerate(choice_buttons):
            choice.click(self._choice_handler(index), [thread_state, question_state], outputs, **private)
        timer.tick(self.on_poll, [thread_state, sig_state], outputs, show_progress="hidden", **private)
        feedback_outputs = [feedback_box, comment, feedback_state]
        chatbot.like(self.on_feedback, [thread_state, ids_state], feedback_outputs, **private)
        send_comment.click(self.on_feedback_comment, [feedback_state, comment], feedback_outputs, **private)
        skip_comment.click(lambda: (gr.Column(visible=False), "", None), None, feedback_outputs, **private)
        examples.click(self.on_example, [examples], [text], **private)
        # The chatbot's own "Clear" button starts a new conversation; the old one stays listed.
        chatbot.clear(self.on_new_thread, None, outputs, **private)

        def fill(request: gr.Request) -> tuple[Any, ...]:
            account = self.accounts.get(getattr(request, "username", None))
            if account is None or not account.is_customer:
                return tuple(gr.skip() for _ in range(len(outputs) + 1))
            with self._errors():
                view = self.chat_outputs(self.chat_view(account, None))
            samples = [[p] for p in example_prompts(account.customer_id, plugin=self.app.services.plugin)]
            return (*view, gr.Dataset(samples=samples))

        return fill, [*outputs, examples]
