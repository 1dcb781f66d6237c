"""Whether the Hub can serve what a run needs, asked once before anything loads (one line, not the libraries'
retries and tracebacks, when it cannot)."""

from __future__ import annotations

import os
from pathlib import Path

from evalsuite.errors import HubError, ModelRefError, param
from evalsuite.model.ref import ModelRef, ModelSource


def _truthy(value: str | None) -> bool:
    return (value or "").strip().upper() in ("1", "ON", "YES", "TRUE")


def check_hub_access(ref: ModelRef, hub_dataset: str | None) -> None:
    """Before anything loads: one line when the run needs the Hub (a Hub model; datasets without --data-dir,
    `hub_dataset` being one of them) and cannot have it, instead of the libraries' retries and tracebacks.

    A model the Hub does not know (or that needs a login) is caught here too.
    """
    needs_model = ref.source is ModelSource.HUB
    if _truthy(os.environ.get("HF_DATASETS_OFFLINE")):
        hub_dataset = None  # the user says the datasets are cached
    if not needs_model and hub_dataset is None:
        return
    from huggingface_hub import HfApi, try_to_load_from_cache
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    cached = needs_model and isinstance(try_to_load_from_cache(ref.location, "config.json", revision=ref.revision), str)
    if _truthy(os.environ.get("HF_HUB_OFFLINE")):
        if needs_model and not cached:
            raise ModelRefError(
                f"HF_HUB_OFFLINE is set and {ref.location} is not in the Hugging Face cache; unset it, or download "
                f"the model (`hf download {ref.location}`) and pass its folder"
            )
        return
    api = HfApi()
    try:
        if needs_model:
            api.model_info(ref.location, revision=ref.revision, timeout=10)
        else:
            api.dataset_info(hub_dataset, timeout=10)  # type: ignore[arg-type]
    except GatedRepoError as e:
        raise ModelRefError(
            f"{ref.location} is gated: accept its terms on the Hub and log in (`hf auth login`)"
        ) from e
    except RevisionNotFoundError as e:
        raise ModelRefError(f"{ref.location} has no revision {ref.revision!r} on the Hub") from e
    except RepositoryNotFoundError as e:
        what = ref.location if needs_model else hub_dataset
        raise ModelRefError(f"{what}: not found on the Hub (a typo, or private: log in with `hf auth login`)") from e
    except Exception as e:  # network: DNS, refused, timeout, proxy; the Hub rate-limiting or down
        if (refused := access_refused(e, ref.location if needs_model else str(hub_dataset))) is not None:
            raise refused from e
        if _http_status(e) == 429:
            login = "" if os.environ.get("HF_TOKEN") else ", or log in (`hf auth login`) for a higher limit"
            raise HubError(
                "the Hugging Face Hub is rate-limiting this machine (429 Too Many Requests); wait a few minutes "
                f"and run again{login}"
            ) from e
        if not _is_network_error(e):
            raise
        why = f"{type(e).__name__}: {str(e).splitlines()[0]}" if str(e) else type(e).__name__
        if needs_model and not cached:
            raise HubError(
                f"the Hugging Face Hub is unreachable ({why}) and {ref.location} is not in the local cache; run "
                f"where the Hub is reachable, or download the model there (`hf download {ref.location}`) and pass "
                "its folder as MODEL"
            ) from e
        if needs_model:
            raise HubError(
                f"the Hugging Face Hub is unreachable ({why}); {ref.location} is in the local cache: run with "
                "HF_HUB_OFFLINE=1 to use it" + (f" and {param('data_dir')} for the datasets" if hub_dataset else "")
            ) from e
        raise HubError(
            f"the Hugging Face Hub is unreachable ({why}) and the datasets come from it: pass {param('data_dir')} "
            "with an offline snapshot (see `evalsuite data verify`), or set HF_DATASETS_OFFLINE=1 if they are cached"
        ) from e


def hub_file(ref: ModelRef, filename: str, option: str | None = None) -> Path | None:
    """One small file of a Hub repo at the ref's revision, through the Hub's cache (offline: the cache alone);
    None when the Hub says the repo has no such file. The Hub's failures are one line: a file the Hub could not be
    asked for and the cache lacks (offline, unreachable) is never taken for a file the repo lacks. A repo or
    revision the Hub does not have is said as the parameter `option` that named it (`adapter`), when given."""
    named = f"{param(option)} " if option else ""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        LocalEntryNotFoundError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    offline = _truthy(os.environ.get("HF_HUB_OFFLINE"))
    if not offline and (unreachable := _unreachable_and_not_cached(ref, filename)) is not None:
        raise _not_cached(f"the Hugging Face Hub is unreachable ({type(unreachable).__name__})", ref, filename) \
            from unreachable  # fmt: skip
    try:
        return Path(hf_hub_download(ref.location, filename, revision=ref.revision))
    except RemoteEntryNotFoundError:  # the Hub answered: no such file
        return None
    except LocalEntryNotFoundError as e:  # the Hub not asked (offline) or not answering, and nothing cached
        cause = e.__cause__ or e.__context__
        why = "HF_HUB_OFFLINE is set" if offline else \
            f"the Hugging Face Hub is unreachable ({type(cause).__name__ if cause else 'no connection'})"  # fmt: skip
        raise _not_cached(why, ref, filename) from e
    except RevisionNotFoundError as e:
        raise ModelRefError(f"{named}{ref.location} has no revision {ref.revision!r} on the Hub") from e
    except RepositoryNotFoundError as e:
        raise ModelRefError(
            f"{named}{ref.location}: not found on the Hub (a typo, or private: log in with `hf auth login`)"
        ) from e
    except Exception as e:  # offline without a cache, the Hub down or refusing
        if (refused := access_refused(e, ref.location)) is not None:
            raise refused from e
        why = f"{type(e).__name__}: {str(e).splitlines()[0]}" if str(e) else type(e).__name__
        raise HubError(f"cannot read {filename} of {ref.location} from the Hub or its cache ({why})") from e


def _unreachable_and_not_cached(ref: ModelRef, filename: str) -> BaseException | None:
    """The connection error of one quick question for `filename`, when the Hub cannot be reached and the file is not
    in the cache; else None. hf_hub_download, in that case, asks five more times with growing pauses (about 25 s)
    before it gives up: a user without the Hub learns it at once. A Hub that answers (a 404, a 401, a 5xx) is left
    to hf_hub_download, which says what it answered."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(ref.location, filename, revision=ref.revision), str):
        return None  # cached: hf_hub_download falls back to it
    try:
        get_hf_file_metadata(hf_hub_url(ref.location, filename, revision=ref.revision), timeout=10)
    except Exception as e:  # anything the Hub answered is hf_hub_download's to say
        return e if _http_status(e) is None and _is_network_error(e) else None
    return None


def _not_cached(why: str, ref: ModelRef, filename: str) -> HubError:
    return HubError(
        f"{why} and {filename} of {ref.location} is not in the local cache; run where the Hub is reachable, or "
        f"download it there (`hf download {ref.location}`) and pass its folder"
    )


def _http_status(error: BaseException) -> int | None:
    response = getattr(error, "response", None)
    return getattr(response, "status_code", None)


def access_refused(error: BaseException, repo: str) -> HubError | None:
    """The one line for a Hub that answered 401 or 403 (a bad token, a token without access to `repo`, a gated
    repo whose terms were not accepted), from huggingface_hub's own error class; None for anything else."""
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError

    status = _http_status(error)
    if isinstance(error, GatedRepoError):
        return HubError(f"{repo} is gated: accept its terms on the Hub and log in (`hf auth login`) with that account")
    if isinstance(error, HfHubHTTPError) and status in (401, 403):
        return HubError(
            f"the Hub refused access to {repo} ({status}): check the token (HF_TOKEN or `hf auth login`), that it "
            f"may {'write to' if status == 403 else 'read'} {repo}, and the repo's gated terms"
        )
    return None


def unreachable_reason(error: BaseException) -> str | None:
    """Why the Hub could not be reached (no connection, a timeout, a 5xx), for one line; None when it answered."""
    if not _is_network_error(error):
        return None
    return f"{type(error).__name__}: {str(error).splitlines()[0]}" if str(error) else type(error).__name__


def _is_network_error(error: BaseException) -> bool:
    """A Hub that cannot be reached: no connection, a timeout, or a server error (5xx) after the client's retries.
    A Hub that answered with a 4xx is not unreachable (huggingface_hub's HTTP errors are OSErrors too)."""
    status = _http_status(error)
    if status is not None:
        return status >= 500
    names = {cls.__name__ for cls in type(error).__mro__}
    return bool(names & {"ConnectError", "ConnectTimeout", "TimeoutException", "NetworkError", "TransportError",
                         "ConnectionError", "OfflineModeIsEnabled"}) or isinstance(error, OSError)  # fmt: skip
