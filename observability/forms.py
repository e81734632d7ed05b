from django import forms

from pipeline.lib import load_json
from pipeline.models import StageExecution, StageStatus


class JsonObjectField(forms.CharField):
    """A textarea holding a JSON object (empty: None when not required)."""

    def __init__(self, *, rows: int = 6, placeholder: str = "", **kwargs):
        attrs = {"rows": rows, "cols": 80, "class": "vLargeTextField"}
        if placeholder:
            attrs["placeholder"] = placeholder
        kwargs.setdefault("required", False)
        super().__init__(widget=forms.Textarea(attrs=attrs), **kwargs)

    def to_python(self, value) -> dict | None:
        text = (super().to_python(value) or "").strip()
        if not text:
            return None
        try:
            data = load_json(text)
        except ValueError as error:
            raise forms.ValidationError(f"It is {error}.") from None
        if not isinstance(data, dict):
            raise forms.ValidationError('It must be a JSON object, e.g. {"key": 1}.')
        return data


class RetryForm(forms.Form):
    """Which stage to retry a run from, why, and what to change in the state first."""

    stage = forms.TypedChoiceField(coerce=int, label="Retry from stage")
    reason = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 80}),
        help_text="Why you are retrying; kept on the new run.",
    )
    state_patch = JsonObjectField(
        label="State patch (JSON)",
        help_text='A JSON object of state keys to set before the stage runs, e.g. {"route": "x"}.',
    )
    context = JsonObjectField(
        rows=3,
        label="Runtime context (JSON)",
        help_text="Replaces the run's runtime context for the retry; empty: the run's own.",
    )
    replay_answers = forms.BooleanField(
        required=False,
        label="Replay answers",
        help_text="A stage that asks a question this run's lineage already answered gets that "
        "answer again instead of waiting for an operator.",
    )

    def __init__(self, *args, stages: list[StageExecution], preselect: str | None = None, **kw):
        super().__init__(*args, **kw)
        self.fields["stage"].choices = [
            (row.pk, f"#{row.stage_order} {row.stage_name} ({row.status})") for row in stages
        ]
        self.fields["stage"].initial = _default_stage(stages, preselect)


def _default_stage(stages: list[StageExecution], preselect: str | None) -> int | None:
    """The stage asked for in the URL, else the latest failed one, else the last one."""
    ids = [row.pk for row in stages]
    if preselect and preselect.isdigit() and int(preselect) in ids:
        return int(preselect)
    failed = [row.pk for row in stages if row.status == StageStatus.FAILED]
    return (failed or ids or [None])[-1]


class ReasonForm(forms.Form):
    """The confirmation of an action on a run (cancel, resume, rerun)."""

    reason = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 80}),
        help_text="Why; kept in the audit trail.",
    )


class StartRunForm(forms.Form):
    graph = forms.ChoiceField(help_text="A registered graph.")
    input = forms.CharField(
        label="Input (JSON)",
        widget=forms.Textarea(
            attrs={
                "rows": 8,
                "cols": 80,
                "class": "vLargeTextField",
                "placeholder": '{"question": "Label the parts of a plant cell"}',
            }
        ),
        help_text=(
            "A JSON object, checked against the graph's input schema before anything is queued. "
            'For GamED: {"question": "Label the parts of a plant cell"}, optionally with '
            '"max_blueprint_attempts" and "faults". Messages may be given as '
            '{"role": "user", "content": "..."} objects.'
        ),
    )
    context = JsonObjectField(
        rows=3,
        label="Runtime context (JSON)",
        help_text="For graphs with a context_schema: checked against it, given to every "
        "execution of the run, kept apart from the state.",
    )
    reason = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 80}),
        help_text="Why you are starting it; kept on the run.",
    )

    def __init__(self, *args, graphs: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["graph"].choices = [(name, name) for name in graphs]

    def clean_input(self) -> object:
        try:
            return load_json(self.cleaned_data["input"])
        except ValueError as error:
            raise forms.ValidationError(f"The input is {error}.") from None


class AnswerForm(forms.Form):
    """An answer to one question: a choice button, plain text, or any JSON value."""

    interrupt_id = forms.CharField(max_length=64)
    choice = forms.CharField(required=False)
    text = forms.CharField(required=False, max_length=10000, strip=False)
    answer_json = forms.CharField(required=False, max_length=100000)
    reason = forms.CharField(required=False, max_length=2000)

    def clean(self) -> dict:
        data = super().clean()
        given = [name for name in ("choice", "text", "answer_json") if data.get(name)]
        if len(given) != 1:
            raise forms.ValidationError(
                "Give one answer: click a choice, type text, or write JSON."
            )
        if given == ["text"]:
            data["value"] = data["text"]
            return data
        try:
            data["value"] = load_json(data[given[0]])
        except ValueError as error:
            raise forms.ValidationError(f"The JSON answer is {error}.") from None
        return data
