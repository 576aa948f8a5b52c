"""End-to-end: berth's CLI and the docker CLI give the same answers, byte for byte, for the same command.

Each check runs one command line with both clients against the same daemon, one
right after the other, and compares exit status, stdout and stderr (with
`docker` replaced by `berth` in the text), after normalising what may differ
between two runs a second apart (ages like "3 seconds ago", CPU percentages).
The verbs here are the ones issue 15 found missing or different in berth:
`image inspect|history`, `network ls --format`, `stats`, `system df`,
`container ...`, `update`, `diff`, `--group-add`, unknown verbs and flags.
"""

from __future__ import annotations

import json
import re

import pytest
from berth_e2e_conftest import RUN_NET, LineReader, cli_run, docker, finish, popen_cli, unique_name, wait_until

_AGE = re.compile(r"(About an? \w+|Less than a second|\d+ \w+) ago")


def both(d, *args, normalise=None, check_code=None, input=None):
    """Run *args* with docker and with berth; assert they agree; return berth's result."""
    want = cli_run("docker", d, *args, check=False, input=input)
    got = cli_run("berth", d, *args, check=False, input=input)
    fix = normalise or (lambda text: text)
    expected = (want.returncode, fix(want.stdout), fix(want.stderr.replace("docker", "berth")))
    actual = (got.returncode, fix(got.stdout), fix(got.stderr))
    assert actual == expected, f"berth {' '.join(args)}\n  berth:  {actual!r}\n  docker: {expected!r}"
    if check_code is not None:
        assert got.returncode == check_code, got
    return got


def ages(text):
    """Ages and the column widths that follow from them."""
    return re.sub(r" {2,}", "  ", _AGE.sub("<age> ago", text))


def any_order(text):
    """Rows of one image's repositories, which docker's CLI prints in Go's random map order."""
    return "".join(sorted(text.splitlines(keepends=True)))


def test_image_inspect_and_history(berthd, image):
    both(berthd, "image", "inspect", image, check_code=0)
    both(berthd, "image", "inspect", "--format", "{{.Id}} {{json .RepoTags}}", image, check_code=0)
    missing = unique_name("nosuch")
    both(berthd, "image", "inspect", missing, check_code=1)
    both(berthd, "image", "inspect", image, missing, check_code=1)
    both(berthd, "image", "inspect", "--format", "{{.Id}}", missing, check_code=1)
    both(berthd, "image", "history", image, normalise=ages, check_code=0)
    both(berthd, "history", image, normalise=ages, check_code=0)
    both(berthd, "image", "history", "--no-trunc", image, normalise=ages, check_code=0)
    both(berthd, "image", "history", "-q", image, check_code=0)
    both(berthd, "image", "history", "--format", "{{.ID}}|{{.CreatedBy}}|{{.Size}}|{{.Comment}}", image,
         check_code=0)
    both(berthd, "image", "history", missing, check_code=1)
    both(berthd, "image", "ls", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}", normalise=any_order,
         check_code=0)


def test_network_ls_format(berthd, network):
    net = network("--label", "team=blue")
    both(berthd, "network", "ls", check_code=0)
    both(berthd, "network", "ls", "--format", "{{.Name}}", check_code=0)
    both(berthd, "network", "ls", "-q", check_code=0)
    both(berthd, "network", "ls", "--no-trunc", "--format", "{{.ID}} {{.Driver}} {{.Scope}}", check_code=0)
    both(berthd, "network", "ls", "--filter", f"name={net}", "--format",
         "{{.Name}} {{.Internal}} {{.IPv6}} {{.Labels}} {{.Label \"team\"}}", check_code=0)
    out = cli_run("berth", berthd, "network", "ls", "--format", "{{.Name}}").stdout.split()
    assert net in out and "bridge" in out


def test_stats_no_stream(berthd, image, names):
    name = names()
    docker(berthd, "run", "-d", *RUN_NET, "--name", name, image, "sleep", "1000")
    for client in ("docker", "berth"):
        cp = cli_run(client, berthd, "stats", "--no-stream", name)
        header, row = cp.stdout.splitlines()
        assert re.split(r"\s{2,}", header) == ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %",
                                               "NET I/O", "BLOCK I/O", "PIDS"], (client, header)
        fields = re.split(r"\s{2,}", row)
        assert fields[1] == name and fields[-1] == "1", (client, row)
        assert re.fullmatch(r"\d+\.\d\d%", fields[2]) and re.fullmatch(r"\d+\.\d\d%", fields[4]), (client, row)
        assert re.fullmatch(r"[\d.]+[KMG]?i?B / [\d.]+[KMGT]?i?B", fields[3]), (client, row)
    cpu = re.compile(r"\d+\.\d\d%")
    both(berthd, "stats", "--no-stream", "--format", "{{.Name}} {{.Container}} {{.ID}} {{.PIDs}} {{.NetIO}}",
         name, check_code=0)
    both(berthd, "stats", "--no-stream", "--no-trunc", "--format", "{{.ID}} {{.Name}}", name, check_code=0)
    both(berthd, "stats", "--no-stream", "--format", "table {{.Name}}\t{{.CPUPerc}}", name,
         normalise=lambda t: cpu.sub("<cpu>", t), check_code=0)
    listed = cli_run("berth", berthd, "stats", "--no-stream", "--format", "{{.Name}}").stdout.split()
    assert name in listed
    both(berthd, "stats", "--no-stream", unique_name("nosuch"), check_code=1)


def test_system_df(berthd, image, names):
    docker(berthd, "create", *RUN_NET, "--name", names(), image, "true")
    both(berthd, "system", "df", check_code=0)
    both(berthd, "system", "df", "--format", "{{.Type}}:{{.TotalCount}}:{{.Active}}:{{.Reclaimable}}",
         check_code=0)
    rows = [json.loads(line) for line in cli_run("berth", berthd, "system", "df", "--format", "json")
            .stdout.splitlines()]
    assert [r["Type"] for r in rows] == ["Images", "Containers", "Local Volumes", "Build Cache"]


def test_container_group_update_diff(berthd, image, names):
    name, other = names(), names()
    for client, n in (("docker", name), ("berth", other)):
        cp = cli_run(client, berthd, "container", "create", *RUN_NET, "--name", n, image, "sh", "-c",
                     "touch /made; sleep 1000")
        assert re.fullmatch(r"[0-9a-f]{64}\n", cp.stdout), (client, cp)
    # a second container of the same name is refused, in the same words and status
    both(berthd, "container", "create", *RUN_NET, "--name", name, image, "true", check_code=1)
    both(berthd, "run", *RUN_NET, "--name", name, image, "true", check_code=125)
    both(berthd, "container", "ls", "-a", "--filter", f"name=^{name}$", "--format", "{{.Names}} {{.State}}",
         check_code=0)
    both(berthd, "container", "inspect", "--format", "{{.Name}} {{.State.Status}}", name, check_code=0)
    docker(berthd, "container", "start", name)
    wait_until(lambda: "A /made" in cli_run("berth", berthd, "diff", name).stdout, 30, "/made in diff")
    both(berthd, "diff", name, check_code=0)
    both(berthd, "container", "diff", name, check_code=0)
    assert cli_run("berth", berthd, "update", "--memory", "96m", "--memory-swap", "192m", name).stdout == f"{name}\n"
    host = json.loads(cli_run("berth", berthd, "container", "inspect", name).stdout)[0]["HostConfig"]
    assert (host["Memory"], host["MemorySwap"]) == (96 << 20, 192 << 20)
    both(berthd, "container", "update", "--cpus", "0.5", name, check_code=0)
    both(berthd, "update", "--memory", "1k", name, check_code=1)
    both(berthd, "update", name, check_code=1)
    both(berthd, "container", "top", name, normalise=lambda t: re.sub(r"\d\d:\d\d:\d\d|\d+", "<n>", t),
         check_code=0)
    both(berthd, "container", "rm", "-f", unique_name("nosuch"), check_code=0)
    assert cli_run("berth", berthd, "container", "rm", "-f", name).stdout == f"{name}\n"


def test_container_prune(berthd, image, names):
    gone, kept = names("prune-gone"), names("prune-kept")
    docker(berthd, "create", *RUN_NET, "--name", gone, "--label", f"prune={gone}", image, "true")
    docker(berthd, "run", "-d", *RUN_NET, "--name", kept, "--label", f"prune={gone}", image, "sleep", "1000")
    cid = json.loads(docker(berthd, "inspect", gone).stdout)[0]["Id"]
    out = cli_run("berth", berthd, "container", "prune", "-f", "--filter", f"label=prune={gone}").stdout
    assert out == f"Deleted Containers:\n{cid}\n\nTotal reclaimed space: 0B\n", out
    both(berthd, "container", "prune", "-f", "--filter", f"label=prune={gone}", check_code=0)
    assert docker(berthd, "inspect", kept, check=False).returncode == 0


def test_group_add(berthd, image):
    both(berthd, "run", "--rm", *RUN_NET, "--group-add", "10", "--group-add", "0", image, "id", "-G",
         check_code=0)
    both(berthd, "run", "--rm", *RUN_NET, "--group-add", "nosuchgroup", image, "id", "-G", check_code=125)
    out = cli_run("berth", berthd, "run", "--rm", *RUN_NET, "--group-add", "10", image, "id", "-G").stdout.split()
    assert "10" in out


def test_run_failures(berthd, image, names):
    both(berthd, "run", "--rm", *RUN_NET, image, "nosuchcmd", check_code=127)
    both(berthd, "run", "--rm", *RUN_NET, image, "/etc/passwd", check_code=126)
    both(berthd, "run", "--rm", *RUN_NET, "--memory", "12x", image, "true", check_code=125)
    both(berthd, "run", "--rm", *RUN_NET, "-p", "99999:1", image, "true", check_code=125)
    both(berthd, "create", *RUN_NET, "-p", "99999:1", image, "true", check_code=125)
    both(berthd, "run", "--rm", *RUN_NET, "--bogus", image, "true", check_code=125)
    both(berthd, "run", "--rm", *RUN_NET, "--gpus", "all", image, "true", check_code=125)
    both(berthd, "run", "--rm", *RUN_NET, "--gpus", "bogus=1", image, "true", check_code=125)
    for flag, value in (("--cpu-count", "2"), ("--cpu-percent", "50"), ("--io-maxbandwidth", "1m"),
                        ("--io-maxiops", "9")):
        both(berthd, "create", *RUN_NET, flag, value, image, "true", check_code=1)


def test_flags_newer_than_the_api(berthd, image):
    # berthd serves API 1.47: both CLIs refuse what needs a later one, before any request
    both(berthd, "save", "--platform", "linux/amd64", "-o", "/dev/null", image, check_code=1)
    both(berthd, "load", "--platform", "linux/amd64", "-i", "/dev/null", check_code=1)
    both(berthd, "rmi", "--platform", "linux/amd64", image, check_code=1)


def _no_suggestion(text):
    return re.sub(r"Did you mean this\?\n(\t.*\n)+\n", "", text)


def test_group_usage(berthd):
    for group in ("container", "image", "system", "builder"):
        both(berthd, group, "bogus", check_code=1, normalise=lambda t: _legacy(_no_suggestion(t)))
    for group in ("network", "volume"):
        want = cli_run("docker", berthd, group, "--help").stdout.replace("docker", "berth")
        if group == "volume":  # docker's swarm-only sub-verb
            want = want.replace("  update      Update a volume (cluster volumes only)\n", "")
        assert cli_run("berth", berthd, group, "--help").stdout == want
        both(berthd, group, "bogus", check_code=1, normalise=_no_suggestion)


def test_unknown_verbs_and_flags(berthd):
    # berth adds docker's (cobra's) "Did you mean this?" lines, which docker 28 leaves out; the rest is the same
    both(berthd, "imge", check_code=1, normalise=_no_suggestion)
    both(berthd, "image", "inspct", check_code=1, normalise=_no_suggestion)
    both(berthd, "image", "bogus", check_code=1)
    assert "Did you mean this?\n\timage\n" in cli_run("berth", berthd, "imge", check=False).stderr
    assert "Did you mean this?\n\tinspect\n" in cli_run("berth", berthd, "image", "inspct", check=False).stderr
    both(berthd, "--bogus", check_code=125)
    both(berthd, "-H", check_code=125)
    both(berthd, "--host", check_code=125)
    both(berthd, "ps", "--bogus", check_code=125)
    both(berthd, "network", "ls", "--bogus", check_code=125)
    both(berthd, "stats", "--no-stream", "--bogus", check_code=125)


def test_network_inspect_rm_prune(berthd, network):
    net = network("--label", "team=green")
    both(berthd, "network", "inspect", "--format", "{{.Name}} {{.Driver}} {{.Labels.team}}", net, check_code=0)
    both(berthd, "network", "inspect", "-f", "{{json .IPAM.Driver}}", net, "bridge", check_code=0)
    missing = unique_name("nonet")
    both(berthd, "network", "inspect", "--format", "{{.Name}}", net, missing, check_code=1)
    both(berthd, "network", "inspect", "--format", "{{.Name}}", missing, check_code=1)
    both(berthd, "network", "rm", "-f", missing, check_code=0)
    # docker's CLI adds a line "exit status 1" here (its error has no text of its own); berth does not
    both(berthd, "network", "rm", missing, check_code=1, normalise=lambda t: t.replace("exit status 1\n", ""))
    both(berthd, "network", "prune", "-f", "--filter", "label=team=nosuchteam", check_code=0)
    both(berthd, "network", "prune", input="n\n", check_code=0)
    assert net in cli_run("berth", berthd, "network", "ls", "--format", "{{.Name}}").stdout.split()


def test_image_prune_asks(berthd, image):
    both(berthd, "image", "prune", input="n\n", check_code=0)
    both(berthd, "image", "prune", "-a", input="no\n", check_code=0)
    both(berthd, "image", "prune", "-f", "--filter", "label=nosuch=label", check_code=0)


def test_run_pull_policy_quiet_env_file(berthd, image, names, tmp_path):
    missing = f"{unique_name('nosuch')}:latest"
    both(berthd, "run", "--rm", *RUN_NET, "--pull", "never", missing, "true", check_code=125)
    both(berthd, "create", *RUN_NET, "--pull", "never", missing, "true", check_code=1)
    both(berthd, "run", "--rm", *RUN_NET, "--pull", "sometimes", image, "true", check_code=125)
    both(berthd, "run", "--rm", *RUN_NET, "-q", "--pull", "missing", image, "echo", "quiet", check_code=0)
    envs = tmp_path / "env"
    envs.write_text("# comment\nFROM_FILE=yes\nB=from-file\n")
    name = names()
    docker(berthd, "run", "-d", *RUN_NET, "--name", name, image, "sleep", "1000")
    both(berthd, "exec", "--env-file", str(envs), "-e", "B=flag", name, "sh", "-c", "echo $FROM_FILE $B",
         check_code=0)
    both(berthd, "exec", name, check_code=1)
    both(berthd, "exec", check_code=1)


def test_json_listings(berthd, image, names, network):
    name = names()
    docker(berthd, "create", *RUN_NET, "--name", name, "--label", "k=v", image, "true")
    net = network()

    def steady(text):  # ages in words, and the columns whose widths follow them
        return re.sub(r'"(RunningFor|CreatedSince)":"[^"]*"', r'"\1":"<age>"', text)
    both(berthd, "ps", "-a", "--filter", f"name={name}", "--format", "json", normalise=steady, check_code=0)
    both(berthd, "images", "--format", "json", normalise=lambda t: any_order(steady(t)), check_code=0)
    both(berthd, "network", "ls", "--filter", f"name={net}", "--format", "json", check_code=0)
    both(berthd, "volume", "ls", "--format", "json", check_code=0)
    both(berthd, "image", "history", "--format", "json", image, normalise=steady, check_code=0)
    both(berthd, "system", "df", "--format", "json", check_code=0)
    both(berthd, "system", "df", "-v", "--format", "json", check_code=0,
         normalise=lambda t: re.sub(r'"Status":"[^"]*"', '"Status":"<status>"', steady(t)))
    both(berthd, "system", "df", "-v", normalise=ages, check_code=0)


def _legacy(text):
    """docker's CLI warns that its legacy builder is deprecated; berth's has nothing to say."""
    return re.sub(r"DEPRECATED: The legacy builder .*\n(.*\n)*?\n", "", text)


def test_builder_prune(berthd):
    both(berthd, "builder", "prune", input="n\n", check_code=0, normalise=_legacy)
    both(berthd, "builder", "prune", "-f", "--filter", "until=1h", check_code=0, normalise=_legacy)


def test_volume_verbs(berthd, image, names):
    vol = unique_name("vol")
    for client, v in (("docker", vol), ("berth", vol + "-b")):
        assert cli_run(client, berthd, "volume", "create", "--label", "team=red", v).stdout == f"{v}\n"
    try:
        both(berthd, "volume", "ls", "--filter", f"name={vol}", check_code=0)
        both(berthd, "volume", "ls", "-q", "--filter", "label=team=red", check_code=0)
        both(berthd, "volume", "ls", "--filter", f"name={vol}", "--format", "{{.Name}} {{.Driver}} {{.Labels}}",
             check_code=0)
        both(berthd, "volume", "inspect", "--format", "{{.Name}} {{.Mountpoint}} {{.Labels.team}}", vol, check_code=0)
        both(berthd, "volume", "inspect", unique_name("novol"), check_code=1)
        both(berthd, "volume", "inspect", "--format", "{{.Name}}", unique_name("novol"), check_code=1)
        both(berthd, "volume", "rm", unique_name("novol"), check_code=1)
        both(berthd, "volume", "prune", "-f", "--filter", "label=team=nosuch", check_code=0)
    finally:
        cli_run("berth", berthd, "volume", "rm", vol, vol + "-b", check=False)


def test_small_container_verbs(berthd, image, names):
    name = names()
    docker(berthd, "run", "-d", *RUN_NET, "--name", name, "-p", "127.0.0.1::80", image, "sh", "-c",
           "echo one; echo two >&2; sleep 1000")
    wait_until(lambda: "one" in cli_run("berth", berthd, "logs", name).stdout, 30, "first log line")
    both(berthd, "logs", name, check_code=0)
    both(berthd, "logs", "--tail", "1", name, check_code=0)
    both(berthd, "port", name, check_code=0)
    both(berthd, "port", name, "80", check_code=0)
    both(berthd, "port", name, "81", check_code=1)
    both(berthd, "info", "--format", "{{.OSType}} {{.Architecture}}", check_code=0)
    both(berthd, "wait", unique_name("nosuch"), check_code=1)
    both(berthd, "rename", name, check_code=1)
    both(berthd, "kill", "-s", "NOPE", name, check_code=1)
    both(berthd, "top", unique_name("nosuch"), check_code=1)
    both(berthd, "pause", unique_name("nosuch"), check_code=1)
    both(berthd, "unpause", name, check_code=1)  # not paused
    # (plain `inspect` of an unknown name: docker's CLI goes on to ask for a plugin, and berthd answers
    # /plugins with a bare 404, which docker words "does not support plugins"; berth says "No such object")
    both(berthd, "inspect", "--type", "container", "--format", "{{.State.Running}}", name, unique_name("nosuch"),
         check_code=1)
    both(berthd, "container", "inspect", "--format", "{{.State.Running}}", unique_name("nosuch"), check_code=1)
    both(berthd, "inspect", "--format", "json", name, check_code=0)
    both(berthd, "container", "inspect", "--format", "json", name, check_code=0)
    both(berthd, "version", "--format", "{{.Server.APIVersion}} {{.Server.Os}}", check_code=0)


def test_ps_filters_and_formats(berthd, image, names):
    name = names()
    docker(berthd, "run", "-d", *RUN_NET, "--name", name, "--label", "a=b", image, "sleep", "1000")
    for flt in (f"name={name}", f"name=^{name}$", f"name=^/{name}$", "label=a=b", "status=running", "ancestor=" + image):
        both(berthd, "ps", "-a", "--filter", flt, "--format", "{{.Names}} {{.Image}} {{.State}}", check_code=0)
    both(berthd, "ps", "--filter", f"name={name}", "--format", "table {{.Names}}\t{{.Label \"a\"}}\t{{.Networks}}",
         check_code=0)
    both(berthd, "ps", "--filter", f"name={name}", "--no-trunc", "-q", check_code=0)
    both(berthd, "ps", "--filter", "bogus=1", check_code=1)
    both(berthd, "ps", "--filter", "bogus", check_code=125)
    both(berthd, "container", "ls", "-n", "1", "--format", "{{.Names}}", check_code=0)


@pytest.mark.parametrize("client", ["docker", "berth"])
def test_stats_streams(berthd, image, names, client):
    """Without --no-stream, stats keeps measuring: the container shows up round after round."""
    name = names()
    docker(berthd, "run", "-d", *RUN_NET, "--name", name, image, "sleep", "1000")
    proc = popen_cli(client, berthd, "stats", "--format", "{{.Name}} {{.PIDs}}", name)
    try:
        reader = LineReader(proc.stdout)
        reader.wait_for(lambda lines: sum(f"{name} 1" in line for line in lines) >= 2, 30, "two rounds of stats")
    finally:
        proc.kill()
        finish(proc, 10)


def test_commit_export_cp_tag(berthd, image, names, tmp_path):
    name = names()
    docker(berthd, "run", *RUN_NET, "--name", name, image, "sh", "-c", "echo hi > /greeting")
    repo = unique_name("committed")
    for client in ("docker", "berth"):
        out = cli_run(client, berthd, "commit", "-m", "msg", "-c", "ENV A=1", name, f"{repo}:{client}").stdout
        assert re.fullmatch(r"sha256:[0-9a-f]{64}\n", out), (client, out)
        cli_run(client, berthd, "container", "export", "-o", str(tmp_path / f"{client}.tar"), name)
        cli_run(client, berthd, "cp", f"{name}:/greeting", str(tmp_path / f"{client}.txt"))
    assert (tmp_path / "docker.tar").read_bytes() == (tmp_path / "berth.tar").read_bytes()
    assert (tmp_path / "berth.txt").read_text() == "hi\n" == (tmp_path / "docker.txt").read_text()
    both(berthd, "image", "inspect", "--format", "{{.Comment}} {{.Config.Env}}", f"{repo}:berth", check_code=0)
    for client in ("docker", "berth"):
        assert cli_run(client, berthd, "image", "tag", f"{repo}:berth", f"{repo}:{client}-again").stdout == ""
        out = cli_run(client, berthd, "image", "rm", f"{repo}:{client}-again").stdout
        assert out == f"Untagged: {repo}:{client}-again\n", (client, out)
    both(berthd, "image", "rm", f"{repo}:nosuch", check_code=1)
    both(berthd, "cp", f"{name}:/nosuch", str(tmp_path / "x"), check_code=1)
    for client in ("docker", "berth"):
        cli_run(client, berthd, "rmi", f"{repo}:{client}")


def test_login_without_a_terminal(berthd):
    both(berthd, "login", "localhost:1", check_code=1)
    both(berthd, "logout", "localhost:1", check_code=0)
