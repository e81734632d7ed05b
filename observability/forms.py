from django import forms

from pipeline.lib import load_json
from pipeline.models import StageExecution, StageStatus


class RetryForm(forms.Form):
    """Which stage to retry a run from, why, and what to change in the state first."""

    stage = forms.TypedChoiceField(coerce=int, label="Retry from stage")
    reason = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 80}),
        help_text="Why you are retrying; kept on the new run.",
    )
    state_patch = forms.CharField(
        required=False,
        label="State patch (JSON)",
        widget=forms.Textarea(attrs={"rows": 6, "cols": 80, "class": "vLargeTextField"}),
        help_text='A JSON object of state keys to set before the stage runs, e.g. {"route": "x"}.',
    )

    def __init__(self, *args, stages: list[StageExecution], preselect: str | None = None, **kw):
        super().__init__(*args, **kw)
        self.fields["stage"].choices = [
            (row.pk, f"#{row.stage_order} {row.stage_name} ({row.status})") for row in stages
        ]
        self.fields["stage"].initial = _default_stage(stages, preselect)

    def clean_state_patch(self) -> dict | None:
        text = self.cleaned_data["state_patch"].strip()
        if not text:
            return None
        try:
            patch = load_json(text)
        except ValueError as error:
            raise forms.ValidationError(f"The state patch is {error}.") from None
        if not isinstance(patch, dict):
            raise forms.ValidationError(
                'The state patch must be a JSON object of state keys to values, e.g. {"key": 1}.'
            )
        return patch


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
            '"max_blueprint_attempts" and "faults".'
        ),
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
