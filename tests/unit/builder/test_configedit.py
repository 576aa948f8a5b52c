import pytest

from berth.builder.configedit import apply_changes
from berth.errors import InvalidArgument


def test_changes_mean_what_the_dockerfile_lines_mean() -> None:
    cfg: dict = {"Env": ["PATH=/bin"], "Cmd": ["sh"]}
    author = apply_changes([
        "ENV A=1 B=\"two words\"", "ENV C $A-x", "LABEL x=y", "EXPOSE 80 53/udp", "USER bob",
        "WORKDIR /srv", "WORKDIR sub", "VOLUME [\"/data\"]", "STOPSIGNAL SIGINT", "CMD echo hi",
        "ONBUILD RUN touch /x", "HEALTHCHECK --interval=5s CMD true", "MAINTAINER me",
    ], cfg)
    assert author == "me"
    assert cfg["Env"] == ["PATH=/bin", "A=1", "B=two words", "C=1-x"]
    assert cfg["Labels"] == {"x": "y"} and cfg["User"] == "bob" and cfg["WorkingDir"] == "/srv/sub"
    assert set(cfg["ExposedPorts"]) == {"80/tcp", "53/udp"} and cfg["Volumes"] == {"/data": {}}
    assert cfg["StopSignal"] == "SIGINT" and cfg["Cmd"] == ["/bin/sh", "-c", "echo hi"]
    assert cfg["OnBuild"] == ["RUN touch /x"]
    assert cfg["Healthcheck"]["Test"][-1] == "true" and cfg["Healthcheck"]["Interval"] == 5_000_000_000


def test_shell_form_entrypoint_drops_cmd_and_shell_changes_the_form() -> None:
    cfg: dict = {"Cmd": ["x"]}
    apply_changes(['SHELL ["/bin/bash", "-c"]', "ENTRYPOINT run me"], cfg)
    assert cfg["Entrypoint"] == ["/bin/bash", "-c", "run me"] and cfg["Cmd"] is None


@pytest.mark.parametrize("change", ["RUN echo", "COPY a b", "FROM busybox", "FROBNICATE x"])
def test_instructions_that_are_not_config_edits_are_refused(change: str) -> None:
    with pytest.raises(InvalidArgument):
        apply_changes([change], {})
