// alertfusion try-it page: POST /predict, POST /predict_s3, and the asynchronous flow
// (POST /uploads -> presigned POST to S3 -> GET /jobs/{id} until DONE or FAILED, then
// DELETE /jobs/{id}). Access: the API key, or a signed-in user's bearer token (GET
// /auth/config says which): the Cognito hosted sign-in (authorization code with PKCE) where
// deployed, the local stack's demo users, or a pasted token. The labels, their display names
// and the bundle switch come from GET /bundles (each bundle's manifest): no label is named
// here. The microphone section records with MediaRecorder (WebM/Opus in Chromium and Firefox,
// MP4/AAC in Safari) and sends the recording through the asynchronous flow.
// No framework, no build step, no external resources. Every server string goes into the
// page through textContent, never as HTML.
"use strict";

(function () {
  const KEY_STORAGE = "alertfusion.apiKey";
  const TOKEN_STORAGE = "alertfusion.token";
  const PKCE_STORAGE = "alertfusion.pkce";
  const BUNDLE_STORAGE = "alertfusion.bundle";
  const DECIDED_BY = {
    gate: "음성 게이트 / audio gate",
    fusion: "음성+텍스트 융합 / audio + text fusion",
    audio_only: "음성만 / audio only",
  };
  const AGGREGATION = {
    max_emergency_window: "경보 확률이 가장 높은 구간이 결과를 결정합니다 / the window with the highest alert probability decides.",
    mean: "구간 확률의 평균이 결과를 결정합니다 / the mean of the windows' probabilities decides.",
    share: "가장 긴 시간을 차지한 라벨이 결과입니다 / the label with the largest share of the time wins.",
    whole: "녹음 전체가 한 구간입니다 / the whole recording is one window.",
  };
  const TRANSCRIPT_SOURCE = {
    client: "보낸 텍스트 / client",
    aws_transcribe: "Amazon Transcribe",
    model: "번들 음성 인식 모델 / bundle's speech-to-text model",
  };
  const STATUS_KO = {
    UPLOAD_PENDING: "업로드 대기",
    RECEIVED: "수신됨",
    TRANSCRIBING: "전사 중",
    DONE: "완료",
    FAILED: "실패",
    DELETING: "삭제 중",
    DELETED: "삭제됨",
  };
  const MAX_POLL_MS = 15 * 60 * 1000;

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else node.setAttribute(name, String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  // ---- bundles: GET /bundles (names, labels and display names from each manifest) ---------

  let bundles = [];
  let chosen = null; // the selected bundle's description; null: the server lists none

  const displayOf = (label) => (chosen && chosen.display_names ? chosen.display_names[label] : undefined);
  const bilingual = (label) => {
    const shown = displayOf(label);
    return shown && shown !== label ? `${shown} · ${label}` : label;
  };

  // the `bundle` field of a request: only when the user chose another than the default
  const bundleChoice = () => (chosen && !chosen.default ? chosen.name : null);

  function describeBundle(info) {
    const labels = info.labels.map((l) => (l.display !== l.name ? `${l.display} · ${l.name}` : l.name));
    const alerts = info.alert_labels.length ? info.alert_labels.join(", ") : "—";
    return `${info.recipe} (${info.bundle_version}${info.trained ? "" : ", untrained"}) — ` +
      `라벨 / labels: ${labels.join(", ")}; 경보 / alerts: ${alerts}` +
      (info.has_text_model ? "" : "; 텍스트 모델 없음 / no text model (Transcribe is not used)");
  }

  function selectBundle(name) {
    chosen = bundles.find((b) => b.name === name) || bundles.find((b) => b.default) || bundles[0] || null;
    if (!chosen) return;
    $("bundle-select").value = chosen.name;
    $("bundle-info").textContent = describeBundle(chosen);
    document.documentElement.dataset.bundle = chosen.name;
    store(BUNDLE_STORAGE, chosen.default ? "" : chosen.name);
  }

  async function setupBundles() {
    try {
      const { body } = await callApi("bundles", { headers: { Accept: "application/json" } });
      bundles = (body && body.bundles) || [];
    } catch (_) {
      bundles = []; // an older server: the page works without the switch
    }
    if (!bundles.length) return;
    const select = $("bundle-select");
    select.replaceChildren(
      ...bundles.map((b) => el("option", { value: b.name }, `${b.name}${b.default ? " (기본 / default)" : ""} · ${b.recipe}`))
    );
    select.addEventListener("change", () => selectBundle(select.value));
    $("bundle-section").hidden = false;
    selectBundle(stored(BUNDLE_STORAGE));
  }
  const pct = (p) => `${(100 * p).toFixed(1)}%`;

  // ---- access: the API key or a bearer token (sessionStorage only) -----------------------

  let auth = { mode: "api_key" };

  const stored = (name) => {
    try {
      return sessionStorage.getItem(name) || "";
    } catch (_) {
      return ""; // storage disabled: the page still works for this view
    }
  };
  const store = (name, value) => {
    try {
      if (value) sessionStorage.setItem(name, value);
      else sessionStorage.removeItem(name);
    } catch (_) {
      /* ignore */
    }
  };

  function apiHeaders(extra) {
    const headers = Object.assign({ Accept: "application/json" }, extra || {});
    if (auth.mode === "api_key") {
      const key = $("api-key").value.trim();
      if (key) headers["x-api-key"] = key;
    } else {
      const token = stored(TOKEN_STORAGE);
      if (token) headers.Authorization = `Bearer ${token}`;
    }
    return headers;
  }

  function setupKey() {
    const input = $("api-key");
    input.value = stored(KEY_STORAGE);
    input.addEventListener("input", () => store(KEY_STORAGE, input.value));
  }

  const b64url = (bytes) =>
    btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");

  function randomString(length) {
    return b64url(crypto.getRandomValues(new Uint8Array(length))).slice(0, length);
  }

  // what the token says about its user, for display only: the API checks the signature
  function claimsOf(token) {
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(decodeURIComponent(escape(atob(part))));
    } catch (_) {
      return {};
    }
  }

  const pageUrl = () => new URL("upload", document.baseURI).href;

  function showSignedIn() {
    const token = stored(TOKEN_STORAGE);
    const claims = token ? claimsOf(token) : {};
    const name = claims.username || claims["cognito:username"] || claims.email || claims.sub;
    const until = claims.exp ? new Date(claims.exp * 1000).toLocaleTimeString() : "?";
    $("signin-status").textContent = token
      ? `${name || "?"} 로그인됨 / signed in as ${name || "?"} (until ${until})`
      : "로그인하지 않음 / not signed in";
    $("signout").hidden = !token;
    $("local-signin-form").hidden = Boolean(token) || !auth.local;
    $("hosted-signin").hidden = Boolean(token) || !auth.hosted_ui_url;
    $("token-form").hidden = Boolean(token) || Boolean(auth.local || auth.hosted_ui_url);
  }

  async function localSignIn(user, password) {
    let response;
    try {
      response = await fetch(`${auth.local.idp_url}/`, {
        method: "POST",
        headers: {
          "Content-Type": "application/x-amz-json-1.1",
          "X-Amz-Target": "AWSCognitoIdentityProviderService.InitiateAuth",
        },
        body: JSON.stringify({
          AuthFlow: "USER_PASSWORD_AUTH",
          ClientId: auth.client_id,
          AuthParameters: { USERNAME: user, PASSWORD: password },
        }),
      });
    } catch (error) {
      throw new ApiError(0, null, `로그인 실패 / sign-in failed: ${error.message}`);
    }
    const body = await response.json().catch(() => ({}));
    if (!response.ok || !body.AuthenticationResult) {
      const code = String(body.__type || "SIGN_IN_FAILED").split("#").pop();
      throw new ApiError(response.status, { error: { code, message: body.message || "sign-in failed" } }, "");
    }
    const result = body.AuthenticationResult;
    store(TOKEN_STORAGE, auth.token === "id" ? result.IdToken : result.AccessToken);
  }

  async function startHostedSignIn() {
    const verifier = randomString(64);
    const state = randomString(24);
    store(PKCE_STORAGE, JSON.stringify({ verifier, state }));
    const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
    const params = new URLSearchParams({
      response_type: "code",
      client_id: auth.client_id,
      redirect_uri: pageUrl(),
      scope: auth.scopes.join(" "),
      state,
      code_challenge: b64url(new Uint8Array(digest)),
      code_challenge_method: "S256",
    });
    window.location.assign(`${auth.hosted_ui_url}/oauth2/authorize?${params}`);
  }

  // back from the hosted sign-in with ?code=...&state=...: trade the code for the tokens
  async function finishHostedSignIn() {
    const query = new URLSearchParams(window.location.search);
    const code = query.get("code");
    if (!code || !auth.hosted_ui_url) return;
    window.history.replaceState(null, "", pageUrl());
    const pending = JSON.parse(stored(PKCE_STORAGE) || "{}");
    store(PKCE_STORAGE, "");
    if (!pending.verifier || pending.state !== query.get("state")) {
      throw new ApiError(0, null, "로그인 응답이 이 탭의 요청과 다릅니다 / the sign-in answer does not match this tab's request");
    }
    const response = await fetch(`${auth.hosted_ui_url}/oauth2/token`, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        grant_type: "authorization_code",
        client_id: auth.client_id,
        code,
        redirect_uri: pageUrl(),
        code_verifier: pending.verifier,
      }),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new ApiError(response.status, { error: { code: body.error || "SIGN_IN_FAILED", message: "sign-in failed" } }, "");
    store(TOKEN_STORAGE, auth.token === "id" ? body.id_token : body.access_token);
  }

  function signOut() {
    store(TOKEN_STORAGE, "");
    if (auth.hosted_ui_url) {
      const params = new URLSearchParams({ client_id: auth.client_id, logout_uri: pageUrl() });
      window.location.assign(`${auth.hosted_ui_url}/logout?${params}`);
      return;
    }
    showSignedIn();
  }

  async function setupAccess() {
    setupKey();
    try {
      const { body } = await callApi("auth/config", { headers: { Accept: "application/json" } });
      auth = body || auth;
    } catch (_) {
      auth = { mode: "api_key" }; // an older server: the key as before
    }
    if (auth.mode === "api_key") return;
    $("key-section").hidden = true;
    $("signin-section").hidden = false;
    if (auth.local) {
      const select = $("signin-user");
      select.replaceChildren(...auth.local.users.map((u) => el("option", { value: u }, u)));
      $("signin-password").value = auth.local.password || "";
    }
    const form = $("local-signin-form");
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      busy(form, async () => {
        await localSignIn($("signin-user").value, $("signin-password").value);
        showSignedIn();
      });
    });
    $("hosted-signin").addEventListener("click", () => startHostedSignIn().catch((e) => show(renderError(e))));
    const tokenForm = $("token-form");
    tokenForm.addEventListener("submit", (event) => {
      event.preventDefault();
      store(TOKEN_STORAGE, $("token-input").value.trim());
      $("token-input").value = "";
      showSignedIn();
    });
    $("signout").addEventListener("click", signOut);
    try {
      await finishHostedSignIn();
    } catch (error) {
      show(renderError(error));
    }
    showSignedIn();
  }

  // ---- requests ---------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, body, fallback, retryAfter) {
      const err = body && body.error ? body.error : null;
      super(err ? err.message : fallback);
      this.status = status;
      this.code = err ? err.code : `HTTP_${status}`;
      this.requestId = err ? err.request_id : null;
      this.retryAfter = retryAfter || null;
    }
  }

  async function callApi(path, options) {
    const response = await fetch(path, options);
    let body = null;
    const text = await response.text();
    try {
      body = text ? JSON.parse(text) : null;
    } catch (_) {
      body = null;
    }
    if (!response.ok) {
      const retry = Number(response.headers.get("Retry-After"));
      throw new ApiError(response.status, body, text.slice(0, 200) || response.statusText, retry > 0 ? retry : null);
    }
    return { response, body };
  }

  // ---- rendering --------------------------------------------------------------------------

  function bars(probabilities, caption) {
    const entries = Object.entries(probabilities || {});
    const best = entries.reduce((a, b) => (b[1] > a[1] ? b : a), ["", -1])[0];
    return el(
      "ul",
      { class: "bars", "aria-label": caption },
      entries.map(([label, p]) =>
        el(
          "li",
          { class: `bar-row${label === best ? " best" : ""}${alertLabel(label) ? " alert" : ""}` },
          el("span", { class: "name", title: bilingual(label) }, bilingual(label)),
          el(
            "span",
            {
              class: "bar",
              role: "meter",
              "aria-label": `${caption}: ${bilingual(label)}`,
              "aria-valuemin": 0,
              "aria-valuemax": 100,
              "aria-valuenow": (100 * p).toFixed(1),
              "aria-valuetext": pct(p),
            },
            el("span", { class: "fill", style: null })
          ),
          el("span", { class: "value" }, pct(p))
        )
      )
    );
  }

  // whether `label` is one of the chosen bundle's alert labels (a bar drawn in the alert colour)
  const alertLabel = (label) => Boolean(chosen && chosen.alert_labels.includes(label));

  // inline styles are blocked by the page's CSP: widths are set through the CSSOM
  function sizeBars(root) {
    for (const meter of root.querySelectorAll('[role="meter"]')) {
      const fill = meter.querySelector(".fill");
      if (fill) fill.style.width = `${Math.max(0, Math.min(100, Number(meter.getAttribute("aria-valuenow"))))}%`;
    }
  }

  function group(title, ...content) {
    return el("div", { class: "group" }, el("h3", {}, title), ...content);
  }

  function untrainedWarning(trained) {
    if (trained !== false) return null;
    return el(
      "p",
      { class: "warning", role: "note" },
      el("strong", {}, "학습되지 않은 데모 모델입니다. "),
      "결과는 무작위 가중치에서 나온 것으로 의미가 없습니다. ",
      el("span", { lang: "en" }, "This is an untrained demo bundle (random weights): its verdicts mean nothing.")
    );
  }

  function verdictBox(v, heading) {
    const emergency = Boolean(v.is_emergency);
    return el(
      "div",
      { class: `verdict${emergency ? " emergency" : ""}`, "data-testid": "verdict" },
      heading ? el("p", {}, el("strong", {}, heading)) : null,
      el("div", { class: "label" }, `${v.label_ko || displayOf(v.label) || v.label} · ${v.label}`),
      el(
        "p",
        {},
        emergency ? "경보 / alert" : "경보 아님 / not an alert",
        ` — 경보 확률 / alert probability ${pct(v.emergency_probability)}`
      ),
      el("p", {}, `판단 / decided by: ${DECIDED_BY[v.decided_by] || v.decided_by}`),
      v.explanation ? el("p", { class: "hint" }, v.explanation) : null
    );
  }

  function renderResult(result) {
    const audio = result.audio || {};
    const text = result.text || {};
    const fused = result.probabilities
      ? bars(result.probabilities, "융합 / fused")
      : el("p", { class: "note" }, "게이트가 판단: 라벨별 확률 없음 / the gate decided: no per-label probabilities");
    const audioParts = [];
    if (audio.gate) audioParts.push(el("p", { class: "note" }, "이진 게이트 / binary gate"), bars(audio.gate.probabilities, "이진 게이트 / binary gate"));
    if (audio.probabilities) audioParts.push(el("p", { class: "note" }, "음성 모델 / audio model"), bars(audio.probabilities, "음성 / audio"));
    if (!audioParts.length) audioParts.push(el("p", { class: "note" }, "—"));
    const textPart = text.status === "used"
      ? bars(text.probabilities, "텍스트 / text")
      : el("p", { class: "note" }, `건너뜀 / skipped: ${text.detail || text.skipped_reason || ""}`);
    // where the transcript came from: the client, Amazon Transcribe or the bundle's own model
    const heard = result.transcript;
    const heardPart = heard
      ? el(
          "p",
          { class: "hint", "data-transcript-source": heard.source },
          `전사 / transcript (${TRANSCRIPT_SOURCE[heard.source] || heard.source}` +
            `${heard.model ? `: ${heard.model}` : ""}): ${heard.text || "—"}`
        )
      : null;

    const groups = el(
      "div",
      { class: "groups" },
      group("융합 / Fused", fused),
      group("음성 / Audio", ...audioParts),
      group("텍스트 / Text", textPart, heardPart)
    );

    let windows = null;
    if ((result.windows || []).length > 1) {
      windows = el(
        "div",
        {},
        el("h3", {}, `구간별 결과 / Per-window results (${result.windows.length})`),
        el(
          "table",
          { class: "windows" },
          el(
            "thead",
            {},
            el("tr", {}, ["#", "구간 / span (s)", "결과 / label", "판단 / decided by", "경보 확률 / alert p"].map((h) => el("th", { scope: "col" }, h)))
          ),
          el(
            "tbody",
            {},
            result.windows.map((w) =>
              el(
                "tr",
                { class: w.index === result.selected_window ? "selected" : null, "aria-current": w.index === result.selected_window ? "true" : null },
                el("td", {}, w.index),
                el("td", {}, `${w.start_s.toFixed(1)}–${w.end_s.toFixed(1)}`),
                el("td", {}, bilingual(w.label)),
                el("td", {}, w.decided_by),
                el("td", {}, pct(w.emergency_probability))
              )
            )
          )
        ),
        el("p", { class: "hint" }, AGGREGATION[result.aggregation] || result.aggregation || "")
      );
    }

    const model = result.model || {};
    const timings = result.timings || {};
    const meta = el(
      "dl",
      { class: "meta" },
      el("dt", {}, "길이 / duration"), el("dd", {}, `${(result.duration_s || 0).toFixed(2)} s`),
      el("dt", {}, "모델 / bundle"), el("dd", {}, `${model.bundle_version} (${model.recipe || "emergency-voice"}, ${model.trained ? "trained" : "untrained demo"})`),
      el("dt", {}, "시간 / time"), el("dd", {}, `${(timings.total_ms || 0).toFixed(0)} ms`)
    );

    return [
      untrainedWarning(model.trained),
      verdictBox(result),
      groups,
      windows,
      meta,
      el("details", {}, el("summary", {}, "JSON"), el("pre", {}, JSON.stringify(result, null, 2))),
    ];
  }

  function renderJob(job) {
    const parts = [];
    const verdict = job.final || job.preliminary;
    if (verdict) parts.push(untrainedWarning(verdict.trained));
    parts.push(
      el(
        "p",
        { "data-testid": "job-status" },
        el("strong", {}, "상태 / status: "),
        `${STATUS_KO[job.status] || ""} · ${job.status}`,
        ` (job ${job.job_id})`
      )
    );
    if (job.failure) parts.push(el("p", { class: "error", role: "alert" }, el("code", {}, job.failure.reason), " ", job.failure.detail || ""));
    if (job.timings && job.timings.deleted_at) {
      parts.push(
        el(
          "p",
          { "data-testid": "deleted" },
          `삭제됨 / deleted at ${job.timings.deleted_at}`,
          job.status === "DELETING" ? " — 전사 작업이 끝나면 나머지도 삭제됩니다 / the rest goes once Transcribe finishes" : ""
        )
      );
    }
    for (const [name, title] of [["final", "최종 판정 / Final verdict"], ["preliminary", "예비 판정 (음성만) / Preliminary verdict (audio only)"]]) {
      const v = job[name];
      if (!v) continue;
      parts.push(verdictBox(v, title));
      parts.push(
        v.probabilities
          ? bars(v.probabilities, `${title}`)
          : el("p", { class: "note" }, "게이트가 판단 / the gate decided")
      );
      if (v.audio_only_reason) parts.push(el("p", { class: "hint" }, `음성만 사용한 이유 / audio only because: ${v.audio_only_reason} ${v.audio_only_detail || ""}`));
    }
    parts.push(el("details", {}, el("summary", {}, "JSON"), el("pre", {}, JSON.stringify(job, null, 2))));
    return parts;
  }

  function retryText(seconds) {
    const minutes = Math.ceil(seconds / 60);
    return seconds >= 120
      ? `${minutes}분 후에 다시 시도하세요 / try again in ${minutes} minutes`
      : `${seconds}초 후에 다시 시도하세요 / try again in ${seconds} s`;
  }

  function renderError(error) {
    let hint = null;
    if (error.code === "QUOTA_EXCEEDED") {
      hint = el("strong", { class: "retry", "data-testid": "quota" }, "사용 한도에 도달했습니다 / quota reached: ", retryText(error.retryAfter || 60));
    } else if (error.code === "UNAUTHORIZED" && auth.mode !== "api_key") {
      hint = el("strong", { class: "retry" }, "다시 로그인하세요 / sign in again");
    }
    return [
      el(
        "div",
        { class: "error", role: "alert", "data-testid": "error" },
        el("code", {}, error.code || "ERROR"),
        " ",
        error.message || String(error),
        hint,
        error.requestId ? el("p", { class: "hint" }, `request id: ${error.requestId}`) : null
      ),
    ];
  }

  function show(nodes) {
    const section = $("result");
    const body = $("result-body");
    body.replaceChildren(...nodes.filter(Boolean));
    sizeBars(body);
    section.hidden = false;
  }

  async function busy(form, work) {
    const button = form.querySelector("button");
    button.disabled = true;
    form.setAttribute("aria-busy", "true");
    try {
      await work();
    } catch (error) {
      show(renderError(error));
    } finally {
      button.disabled = false;
      form.removeAttribute("aria-busy");
    }
  }

  // ---- 1. POST /predict ---------------------------------------------------------------------

  function setupPredict() {
    const form = $("predict-form");
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      busy(form, async () => {
        const file = $("predict-file").files[0];
        if (!file) throw new ApiError(0, null, "파일을 고르세요 / choose a file");
        const data = new FormData();
        data.append("audio_file", file, file.name);
        const text = $("predict-text").value;
        if (text.trim()) data.append("text_input", text);
        if (bundleChoice()) data.append("bundle", bundleChoice());
        const { body } = await callApi("predict", { method: "POST", headers: apiHeaders(), body: data });
        show(renderResult(body));
      });
    });
  }

  // ---- 2. POST /predict_s3 ------------------------------------------------------------------

  function setupS3() {
    const form = $("s3-form");
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      busy(form, async () => {
        const where = $("s3-key").value.trim();
        if (!where) throw new ApiError(0, null, "S3 키를 입력하세요 / enter an S3 key");
        const payload = where.startsWith("s3://") ? { s3_uri: where } : { s3_key: where };
        const text = $("s3-text").value;
        if (text.trim()) payload.text_input_s3 = text;
        if (bundleChoice()) payload.bundle = bundleChoice();
        const { body } = await callApi("predict_s3", {
          method: "POST",
          headers: apiHeaders({ "Content-Type": "application/json" }),
          body: JSON.stringify(payload),
        });
        show(renderResult(body));
      });
    });
  }

  // ---- 3. the asynchronous flow -------------------------------------------------------------

  function logStep(message) {
    $("async-log").append(el("li", {}, message));
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  async function uploadToS3(upload, file) {
    const data = new FormData();
    for (const [name, value] of Object.entries(upload.fields)) data.append(name, value);
    // the file must be the last field of a POST policy upload
    data.append("file", file, file.name);
    let response;
    try {
      response = await fetch(upload.url, { method: "POST", body: data });
    } catch (error) {
      throw new ApiError(0, null, `S3 업로드 실패 (CORS?) / the upload to S3 failed (CORS?): ${error.message}`);
    }
    if (!response.ok) {
      const text = await response.text();
      const code = (text.match(/<Code>([^<]*)<\/Code>/) || [])[1] || `HTTP_${response.status}`;
      throw new ApiError(response.status, { error: { code, message: `S3: ${text.slice(0, 300)}` } }, "S3");
    }
  }

  async function pollJob(pollUrl) {
    const started = Date.now();
    let lastStatus = null;
    while (Date.now() - started < MAX_POLL_MS) {
      const { response, body } = await callApi(pollUrl, { headers: apiHeaders() });
      if (body.status !== lastStatus) {
        logStep(`${STATUS_KO[body.status] || ""} · ${body.status}`);
        lastStatus = body.status;
      }
      show(renderJob(body));
      if (body.is_final) return body;
      const header = Number(response.headers.get("Retry-After"));
      const seconds = Number.isFinite(header) && header > 0 ? header : body.retry_after_seconds || 2;
      await sleep(seconds * 1000);
    }
    throw new ApiError(0, null, "작업이 너무 오래 걸립니다 / the job takes too long; poll it later");
  }

  // one recording through POST /uploads -> the presigned POST -> GET /jobs/{id}, as the app
  async function runJob(file, transcript) {
    $("async-log").replaceChildren();
    $("delete-job").hidden = true;
    const request = { filename: file.name };
    if (file.type && file.type.startsWith("audio/")) request.content_type = file.type;
    if (transcript && transcript.trim()) request.transcript = transcript;
    if (bundleChoice()) request.bundle = bundleChoice();
    const key = (crypto.randomUUID && crypto.randomUUID()) || `${Date.now()}-${Math.random()}`;
    const { body: job } = await callApi("uploads", {
      method: "POST",
      headers: apiHeaders({ "Content-Type": "application/json", "Idempotency-Key": key }),
      body: JSON.stringify(request),
    });
    logStep(`작업 생성 / job created: ${job.job_id}`);
    await uploadToS3(job.upload, file);
    logStep(`S3 업로드 완료 / uploaded to ${job.upload.key}`);
    const finished = await pollJob(job.poll_url);
    showDelete(finished.job_id);
    return finished;
  }

  function setupAsync() {
    const form = $("async-form");
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      busy(form, async () => {
        const file = $("async-file").files[0];
        if (!file) throw new ApiError(0, null, "파일을 고르세요 / choose a file");
        await runJob(file, $("async-text").value);
      });
    });
    const remove = $("delete-job");
    remove.addEventListener("click", () => {
      busy(form, async () => {
        const { body } = await callApi(`jobs/${remove.dataset.jobId}`, {
          method: "DELETE",
          headers: apiHeaders(),
        });
        logStep(`삭제됨 / deleted: ${body.status}`);
        remove.hidden = true;
        show(renderJob(body));
      });
    });
  }

  function showDelete(jobId) {
    const remove = $("delete-job");
    remove.dataset.jobId = jobId;
    remove.hidden = false;
  }

  // ---- 4. the microphone -------------------------------------------------------------------

  // what the browser records, best first: WebM/Opus (Chromium, Firefox), MP4/AAC (Safari),
  // Ogg/Opus; each maps to an upload type the pipeline takes (its extension from the type)
  const RECORDING_TYPES = [
    ["audio/webm;codecs=opus", "webm"],
    ["audio/webm", "webm"],
    ["audio/mp4;codecs=mp4a.40.2", "m4a"],
    ["audio/mp4", "m4a"],
    ["audio/ogg;codecs=opus", "ogg"],
  ];

  function recordingType() {
    if (typeof MediaRecorder === "undefined") return null;
    return RECORDING_TYPES.find(([type]) => MediaRecorder.isTypeSupported(type)) || null;
  }

  function micStatus(message) {
    $("mic-status").textContent = message;
  }

  function setupMicrophone() {
    const start = $("mic-start");
    const stop = $("mic-stop");
    const chosenType = recordingType();
    if (!chosenType || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      start.disabled = true;
      micStatus("이 브라우저는 녹음을 지원하지 않습니다 / this browser cannot record here (MediaRecorder, a secure origin)");
      return;
    }
    let recorder = null;
    let chunks = [];
    let startedAt = 0;
    start.addEventListener("click", async () => {
      start.disabled = true;
      try {
        const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
        chunks = [];
        recorder = new MediaRecorder(stream, { mimeType: chosenType[0] });
        recorder.addEventListener("dataavailable", (e) => {
          if (e.data && e.data.size) chunks.push(e.data);
        });
        recorder.addEventListener("stop", () => {
          stream.getTracks().forEach((t) => t.stop());
          finishRecording(chunks, recorder.mimeType || chosenType[0], chosenType[1], Date.now() - startedAt);
        });
        recorder.start(250);
        startedAt = Date.now();
        stop.disabled = false;
        micStatus(`녹음 중 / recording (${(recorder.mimeType || chosenType[0])})…`);
      } catch (error) {
        start.disabled = false;
        micStatus(`마이크를 쓸 수 없습니다 / no microphone: ${error.message || error.name}`);
      }
    });
    stop.addEventListener("click", () => {
      stop.disabled = true;
      if (recorder && recorder.state !== "inactive") recorder.stop();
    });
  }

  async function finishRecording(chunks, mimeType, extension, elapsedMs) {
    const type = mimeType.split(";")[0].trim() || "audio/webm";
    const blob = new Blob(chunks, { type });
    const file = new File([blob], `recording.${extension}`, { type: mimeType });
    const playback = $("mic-playback");
    playback.src = URL.createObjectURL(blob);
    playback.hidden = false;
    micStatus(`녹음됨 / recorded ${(elapsedMs / 1000).toFixed(1)} s, ${(blob.size / 1024).toFixed(0)} KiB (${mimeType}); 업로드 중 / uploading…`);
    try {
      const finished = await runJob(file, "");
      micStatus(`완료 / done: ${finished.status} (${type}, ${(blob.size / 1024).toFixed(0)} KiB)`);
    } catch (error) {
      micStatus(`실패 / failed: ${error.code || ""} ${error.message || error}`);
      show(renderError(error));
    } finally {
      $("mic-start").disabled = false;
    }
  }

  document.addEventListener("DOMContentLoaded", async () => {
    setupPredict();
    setupS3();
    setupAsync();
    setupMicrophone();
    await setupBundles();
    await setupAccess();
    document.documentElement.dataset.ready = "true";
  });
})();
