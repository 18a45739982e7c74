"""No usage data leaves this machine: OpenVINO's converter and NNCF send telemetry (Google Analytics, through
`openvino-telemetry`) by default unless the user has opted out globally. roots-edge promises that nothing is
downloaded at run time; nothing is uploaded either.

`decline()` turns it off in this process only, before either library is imported: the consent check answers
"declined", so no client id is created, no event is queued and no sender thread or process starts. The user's
own consent file (`~/intel/openvino_telemetry`) is neither read nor written.
"""
from __future__ import annotations

_declined = False


def decline() -> None:
    """Idempotent; a no-op when openvino-telemetry is not installed (then nothing is sent anyway)."""
    global _declined
    if _declined:
        return
    try:
        from openvino_telemetry.utils.opt_in_checker import ConsentCheckResult, OptInChecker
    except ImportError:
        _declined = True
        return

    def declined(self, enable_opt_in_dialog, disable_in_ci=False):
        return ConsentCheckResult.DECLINED

    OptInChecker.check = declined
    _declined = True

