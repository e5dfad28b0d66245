"""evserve.serve() from Python: the program goes on after a graceful stop (no late exit from
the shutdown watchdog, SIGINT and SIGTERM are Python's again), a second serve() in the same
process and a serve() outside the main thread are refused with a clear error."""

import signal
import subprocess
import textwrap
from pathlib import Path

from conftest import Conn, evserve_bin, free_port, get, is_listening, server_env, wait_for

PROBE = textwrap.dedent("""\
    def application(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"probe"]
""")


def python():
    return str(Path(evserve_bin()).parent / "python")


def start(tmp_path, code):
    (tmp_path / "probe.py").write_text(PROBE)
    out = open(tmp_path / "out.log", "w+")
    proc = subprocess.Popen([python(), "-c", textwrap.dedent(code)], cwd=str(tmp_path), stdout=out,
                            stderr=subprocess.STDOUT, env=server_env(unset=["PYTHONUNBUFFERED"]),
                            start_new_session=True)
    return proc, out


def finish(proc, out, timeout=15):
    try:
        code = proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    out.seek(0)
    return code, out.read()


def test_the_program_goes_on_after_serve_returns(tmp_path):
    # Bug: the instance's shutdown watchdog outlived serve() and ended the process with
    # exit code 1 at the graceful timeout, while the program was still running.
    port = free_port()
    proc, out = start(tmp_path, f"""
        import signal, time, evserve
        from probe import application
        # Python's own SIGINT handler, whatever this test inherited: started as a
        # background job, it has SIGINT ignored, and serve() gives back what it found.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        evserve.serve(application, port={port}, graceful_timeout=1)
        print("serve returned", flush=True)
        time.sleep(2.5)  # past the graceful timeout and the watchdog's margin
        try:
            signal.raise_signal(signal.SIGINT)
            time.sleep(1)
            print("SIGINT was not handled")
        except KeyboardInterrupt:
            print("KeyboardInterrupt after serve")
    """)
    wait_for(lambda: is_listening(port) or proc.poll() is not None, 15, message="serve() to listen")
    c = Conn(port)
    c.send(get("/"))
    assert c.read_response().body == b"probe"
    c.close()
    proc.send_signal(signal.SIGTERM)
    code, text = finish(proc, out)
    assert code == 0, text
    assert "serve returned" in text and "KeyboardInterrupt after serve" in text, text
    assert "exiting now" not in text, text


def test_serve_gives_back_an_ignored_sigint_as_ignored(tmp_path):
    # A program started as a background job (`cmd &`) has SIGINT ignored: after serve()
    # it must still be, not turned into KeyboardInterrupt or the default action.
    port = free_port()
    proc, out = start(tmp_path, f"""
        import signal, evserve
        from probe import application
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        evserve.serve(application, port={port}, graceful_timeout=1)
        signal.raise_signal(signal.SIGINT)
        print("after serve:", signal.getsignal(signal.SIGINT) is signal.SIG_IGN, flush=True)
    """)
    wait_for(lambda: is_listening(port) or proc.poll() is not None, 15, message="serve() to listen")
    proc.send_signal(signal.SIGTERM)
    code, text = finish(proc, out)
    assert code == 0, text
    assert "after serve: True" in text, text


def test_a_second_serve_in_one_process_is_refused(tmp_path):
    port = free_port()
    proc, out = start(tmp_path, f"""
        import evserve
        from probe import application
        evserve.serve(application, port={port})
        try:
            evserve.serve(application, port={port})
        except RuntimeError as e:
            print("refused:", e)
    """)
    wait_for(lambda: is_listening(port) or proc.poll() is not None, 15, message="serve() to listen")
    proc.send_signal(signal.SIGTERM)
    code, text = finish(proc, out)
    assert code == 0, text
    assert "refused: serve() runs once per process" in text, text


def test_serve_outside_the_main_thread_is_refused(tmp_path):
    proc, out = start(tmp_path, """
        import threading, evserve
        from probe import application
        def run():
            try:
                evserve.serve(application, port=1)
            except RuntimeError as e:
                print("refused:", e)
        t = threading.Thread(target=run)
        t.start()
        t.join()
    """)
    code, text = finish(proc, out)
    assert code == 0, text
    assert "refused: evserve must run in the main thread" in text, text


def test_serve_with_workers_forks_the_instances_from_the_app_object(tmp_path):
    # serve(app, workers=N) used to refuse: an app object cannot be imported again by an
    # instance. The instances are forked from a process holding the object.
    port = free_port()
    proc, out = start(tmp_path, f"""
        import atexit, os, evserve
        from probe import application
        atexit.register(lambda: print("atexit in", os.getpid(), flush=True))
        print("caller", os.getpid(), flush=True)
        result = evserve.serve(application, port={port}, workers=2)
        print("serve returned", result, "in", os.getpid(), flush=True)
    """)
    wait_for(lambda: is_listening(port) or proc.poll() is not None, 15, message="serve() to listen")
    for _ in range(50):
        with Conn(port) as c:
            c.send(get("/"))
            assert c.read_response().body == b"probe"
    wait_for(lambda: "ready: 2 instances" in open(tmp_path / "out.log").read(), 15,
             message="both instances")  # fmt: skip
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload: done" in open(tmp_path / "out.log").read(), 15, message="the reload")
    with Conn(port) as c:
        c.send(get("/"))
        assert c.read_response().body == b"probe"
    proc.send_signal(signal.SIGTERM)
    code, text = finish(proc, out)
    assert code == 0, text
    caller = text.split("caller ", 1)[1].split()[0]
    # Only the caller goes on after serve(); each instance ran the atexit handlers and ended.
    assert text.count("serve returned None") == 1, text
    assert f"serve returned None in {caller}" in text, text
    instances = {line.split()[-1] for line in text.splitlines() if line.startswith("atexit in ")}
    instances.discard(caller)
    assert len(instances) >= 4, text  # two at start, two after the reload
