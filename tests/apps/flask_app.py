"""A Flask app exercising forms, JSON, cookies, multipart uploads and streamed responses."""

import hashlib

import flask

app = flask.Flask(__name__)


@app.route("/form", methods=["POST"])
def form():
    return flask.jsonify(dict(flask.request.form))


@app.route("/json", methods=["POST"])
def json_echo():
    data = flask.request.get_json()
    return flask.jsonify({"received": data, "flask_file": flask.__file__})


@app.route("/cookie/set")
def cookie_set():
    resp = flask.make_response("set")
    resp.set_cookie("flavour", "oatmeal")
    return resp


@app.route("/cookie/get")
def cookie_get():
    return flask.request.cookies.get("flavour", "none")


@app.route("/upload", methods=["POST"])
def upload():
    f = flask.request.files["file"]
    data = f.read()
    return flask.jsonify(
        {"filename": f.filename, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
         "note": flask.request.form.get("note")}
    )


@app.route("/stream")
def stream():
    def generate():
        for i in range(5):
            yield f"line {i}\n"

    return flask.Response(flask.stream_with_context(generate()), mimetype="text/plain")


@app.route("/where")
def where():
    return flask.jsonify({"flask_file": flask.__file__})
