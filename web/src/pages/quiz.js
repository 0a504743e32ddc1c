// A lesson's quizzes: editors build them (single, multiple and short-answer questions; reorder,
// edit, delete) and preview them as a learner sees them; learners take them, see their grade and
// each question's result, and a pass completes the lesson (lib/progress.js tells the outline).
// Loaded by the lesson page when someone signed in opens a lesson.
import './quiz.css'
import { h, clear } from '../lib/dom.js'
import { get, post, patch, del } from '../lib/api.js'
import { errorText } from '../lib/errors.js'
import { toast } from '../lib/toast.js'
import { announceProgress } from '../lib/progress.js'

const KINDS = { single: 'Single choice', multiple: 'Multiple choice', short: 'Short answer' }
const pct = (x) => `${Math.round(Number(x) * 100)}%`
let seq = 0
const newId = () => `q${Date.now().toString(36)}${(seq++).toString(36)}`

/** The quizzes box of a lesson. `canEdit`: the course's editors; `courseId` for progress. */
export function quizSection (lessonId, { canEdit, courseId }) {
  const box = h('section.box.quizzes', { 'aria-labelledby': 'quiz-h', 'data-testid': 'quizzes' })
  const list = h('div.quiz-list')
  const editorHost = h('div')
  const addBtn = canEdit ? h('button', { type: 'button', 'data-testid': 'add-quiz', onclick: () => openBuilder(null) }, 'Add a quiz') : null
  clear(box, h('h2#quiz-h', 'Quiz'), list, addBtn, editorHost)

  const load = async () => {
    let page
    try { page = await get(`/lessons/${lessonId}/quizzes`) } catch (e) { clear(list, h('p.error', errorText(e))); return }
    clear(list)
    if (!page.items.length) {
      if (canEdit) list.append(h('p.muted', 'No quiz yet. A learner who passes a quiz completes this lesson.'))
      else box.hidden = true
      return
    }
    box.hidden = false
    for (const quiz of page.items) list.append(canEdit ? staffItem(quiz) : takeQuiz(quiz, { lessonId, courseId }))
  }

  function staffItem (quiz) {
    const preview = h('div.quiz-preview')
    const item = h('article.quiz-item', { 'data-testid': 'quiz-item', dataset: { id: quiz.id } },
      h('h3', quiz.title),
      h('p.muted', `${quiz.questions.length} question${quiz.questions.length === 1 ? '' : 's'} · pass mark ${pct(quiz.pass_score)}`),
      h('div.row',
        h('button.small', {
          type: 'button',
          'aria-expanded': 'false',
          onclick: (e) => {
            const open = preview.childElementCount === 0
            clear(preview, open ? takeQuiz(quiz, { lessonId, courseId, preview: true }) : null)
            e.currentTarget.setAttribute('aria-expanded', String(open))
            e.currentTarget.textContent = open ? 'Close preview' : 'Preview as a learner'
          }
        }, 'Preview as a learner'),
        h('button.small', { type: 'button', onclick: () => openBuilder(quiz) }, 'Edit'),
        h('button.small', {
          type: 'button',
          onclick: async () => {
            if (!item.querySelector('.confirm')) {
              item.append(h('p.confirm.row', { role: 'group', 'aria-label': 'Confirm deletion' }, `Delete “${quiz.title}”?`,
                h('button.small.danger', {
                  type: 'button',
                  onclick: async () => {
                    try { await del(`/quizzes/${quiz.id}`); toast('Quiz deleted'); load() } catch (err) { item.append(h('p.error', errorText(err))) }
                  }
                }, 'Yes, delete'),
                h('button.small', { type: 'button', onclick: () => item.querySelector('.confirm')?.remove() }, 'Keep')))
              item.querySelector('.confirm button')?.focus()
            }
          }
        }, 'Delete')),
      preview)
    return item
  }

  function openBuilder (quiz) {
    clear(editorHost, builder(lessonId, quiz, {
      onSaved: () => { clear(editorHost); addBtn?.focus(); load() },
      onCancel: () => { clear(editorHost); addBtn?.focus() }
    }))
    editorHost.querySelector('input')?.focus()
  }

  load()
  return box
}

// --- the builder -------------------------------------------------------------------------------

function blankQuestion (kind = 'single') {
  return { id: newId(), kind, prompt: '', options: ['', ''], answer: kind === 'multiple' ? [] : 0, accepted: [] }
}

function builder (lessonId, quiz, { onSaved, onCancel }) {
  const questions = quiz
    ? quiz.questions.map((q) => ({ ...blankQuestion(q.kind), ...structuredClone(q) }))
    : [blankQuestion()]
  const title = h('input', { required: true, maxlength: 300, value: quiz?.title || '', 'data-testid': 'quiz-title' })
  const pass = h('input', { type: 'number', min: 0, max: 100, step: 1, required: true, value: Math.round((quiz?.pass_score ?? 0.7) * 100) })
  const qHost = h('ol.q-list')
  const msg = h('p', { role: 'status', 'aria-live': 'polite' })

  const draw = (focus) => {
    clear(qHost, questions.map((q, i) => questionEditor(q, i)))
    // in the whole form: after a question is removed the focus goes to "Add question", below the list
    if (focus) form.querySelector(focus)?.focus()
  }
  const move = (i, d) => {
    const j = i + d
    if (j < 0 || j >= questions.length) return
    ;[questions[i], questions[j]] = [questions[j], questions[i]]
    draw(`[data-move="${questions[j].id}:${d}"]`)
    msg.textContent = `Question moved to position ${j + 1}.`
  }

  function questionEditor (q, i) {
    const n = i + 1
    const kind = h('select', {
      onchange: () => {
        q.kind = kind.value
        q.answer = q.kind === 'multiple' ? (Array.isArray(q.answer) ? q.answer : [q.answer].filter((x) => Number.isInteger(x))) : (Array.isArray(q.answer) ? (q.answer[0] ?? 0) : q.answer)
        if (q.kind !== 'short' && (!q.options || q.options.length < 2)) q.options = ['', '']
        draw(`[data-kind="${q.id}"]`)
      },
      dataset: { kind: q.id }
    }, Object.entries(KINDS).map(([v, t]) => h('option', { value: v, selected: q.kind === v }, t)))
    const prompt = h('textarea', { rows: 2, required: true, maxlength: 2000, oninput: () => { q.prompt = prompt.value } })
    prompt.value = q.prompt
    let body
    if (q.kind === 'short') {
      const acc = h('textarea', { rows: 2, required: true, oninput: () => { q.accepted = acc.value.split('\n').map((s) => s.trim()).filter(Boolean) } })
      acc.value = (q.accepted || []).join('\n')
      body = h('label', `Accepted answers for question ${n} (one per line; case and spaces are ignored)`, acc)
    } else {
      const multiple = q.kind === 'multiple'
      const rows = q.options.map((opt, k) => {
        const text = h('input', { required: true, maxlength: 500, value: opt, 'aria-label': `Question ${n}, option ${k + 1}`, oninput: () => { q.options[k] = text.value } })
        const right = h('input', {
          type: multiple ? 'checkbox' : 'radio',
          name: `right-${q.id}`,
          checked: multiple ? q.answer.includes(k) : q.answer === k,
          onchange: () => {
            if (multiple) q.answer = q.options.map((_, x) => x).filter((x) => x === k ? right.checked : q.answer.includes(x))
            else q.answer = k
          }
        })
        const remove = q.options.length > 2
          ? h('button.small', {
            type: 'button',
            'aria-label': `Remove option ${k + 1} of question ${n}`,
            onclick: () => {
              q.options.splice(k, 1)
              if (multiple) q.answer = q.answer.filter((x) => x !== k).map((x) => (x > k ? x - 1 : x))
              else if (q.answer === k) q.answer = 0
              else if (q.answer > k) q.answer--
              draw(`[data-add-option="${q.id}"]`)
            }
          }, 'Remove')
          : null
        return h('li.row', text, h('label.inline', right, ' Correct', h('span.sr-only', ` (option ${k + 1} of question ${n})`)), remove)
      })
      body = h('div', h('p.muted', multiple ? 'Options (tick every correct one):' : 'Options (choose the correct one):'),
        h('ol.options', rows),
        h('button.small', { type: 'button', dataset: { addOption: q.id }, onclick: () => { q.options.push(''); draw(`[aria-label="Question ${n}, option ${q.options.length}"]`) } }, 'Add option', h('span.sr-only', ` to question ${n}`)))
    }
    return h('li.q-edit', { 'data-testid': 'question-editor' },
      h('fieldset',
        h('legend', `Question ${n}`),
        h('label', `Question ${n} type`, kind),
        h('label', `Question ${n} prompt`, prompt),
        body,
        h('div.row',
          h('button.small', { type: 'button', disabled: i === 0, dataset: { move: `${q.id}:-1` }, onclick: () => move(i, -1) }, 'Move up', h('span.sr-only', ` (question ${n})`)),
          h('button.small', { type: 'button', disabled: i === questions.length - 1, dataset: { move: `${q.id}:1` }, onclick: () => move(i, 1) }, 'Move down', h('span.sr-only', ` (question ${n})`)),
          questions.length > 1 ? h('button.small', { type: 'button', 'aria-label': `Remove question ${n}`, onclick: () => { questions.splice(i, 1); draw('[data-testid=add-question]'); msg.textContent = `Question ${n} removed.` } }, 'Remove') : null)))
  }

  const payload = () => ({
    title: title.value.trim(),
    pass_score: Math.min(100, Math.max(0, Number(pass.value) || 0)) / 100,
    questions: questions.map((q) => q.kind === 'short'
      ? { id: q.id, kind: 'short', prompt: q.prompt, accepted: q.accepted }
      : { id: q.id, kind: q.kind, prompt: q.prompt, options: q.options, answer: q.answer })
  })

  const form = h('form.stack.quiz-builder', {
    'aria-label': quiz ? `Edit quiz ${quiz.title}` : 'New quiz',
    onsubmit: async (e) => {
      e.preventDefault()
      const body = payload()
      const missing = body.questions.findIndex((q) => q.kind === 'multiple' ? !q.answer.length : q.kind === 'short' ? !q.accepted.length : false)
      if (missing >= 0) { msg.textContent = `Question ${missing + 1} needs a correct answer.`; msg.className = 'error'; return }
      msg.className = ''
      msg.textContent = 'Saving…'
      try {
        if (quiz) await patch(`/quizzes/${quiz.id}`, body); else await post(`/lessons/${lessonId}/quizzes`, body)
        toast(quiz ? 'Quiz saved' : 'Quiz added')
        onSaved()
      } catch (err) { msg.className = 'error'; msg.textContent = errorText(err) }
    },
    onkeydown: (e) => { if (e.key === 'Escape') { e.preventDefault(); onCancel() } }
  },
  h('h3', quiz ? `Edit “${quiz.title}”` : 'New quiz'),
  h('label', 'Quiz title', title),
  h('label', 'Pass mark (%)', pass),
  qHost,
  h('div.row',
    h('button.small', { type: 'button', 'data-testid': 'add-question', onclick: () => { questions.push(blankQuestion()); draw(`[data-kind="${questions.at(-1).id}"]`) } }, 'Add question')),
  h('div.row', h('button.primary', { type: 'submit' }, 'Save quiz'), h('button', { type: 'button', onclick: onCancel }, 'Cancel')),
  msg)
  draw()
  return form
}

// --- taking a quiz (and the editors' preview) -----------------------------------------------

const norm = (s) => String(s).split(/\s+/).filter(Boolean).join(' ').toLowerCase()

/** Grade locally with the key (the editors' preview: nothing is recorded). */
function gradeLocally (quiz, answers) {
  const results = {}
  for (const q of quiz.questions) {
    const given = answers[q.id]
    if (given === undefined) results[q.id] = false
    else if (q.kind === 'single') results[q.id] = given === q.answer
    else if (q.kind === 'multiple') results[q.id] = given.length === q.answer.length && q.answer.every((x) => given.includes(x))
    else results[q.id] = (q.accepted || []).some((a) => norm(a) === norm(given))
  }
  const score = quiz.questions.length ? Object.values(results).filter(Boolean).length / quiz.questions.length : 0
  return { score, passed: score >= quiz.pass_score, results, lesson_status: null, progress: null }
}

export function takeQuiz (quiz, { lessonId, courseId, preview = false }) {
  const result = h('div.quiz-result', { role: 'status', 'aria-live': 'polite', 'data-testid': 'quiz-result' })
  const marks = new Map()
  const fields = quiz.questions.map((q, i) => {
    const mark = h('p.mark', { 'data-testid': 'question-result' })
    marks.set(q.id, mark)
    let input
    if (q.kind === 'short') {
      input = h('label', 'Your answer', h('input', { name: q.id, autocomplete: 'off' }))
    } else {
      const type = q.kind === 'single' ? 'radio' : 'checkbox'
      input = h('div.choices', q.options.map((opt, k) => h('label.inline', h('input', { type, name: q.id, value: k }), ' ', opt)))
    }
    return h('fieldset.question', { dataset: { qid: q.id } },
      h('legend', h('span.muted', `${i + 1}. `), q.prompt, q.kind === 'multiple' ? h('span.muted', ' (choose all that apply)') : null),
      input, mark)
  })
  const submit = h('button.primary', { type: 'submit' }, preview ? 'Check answers' : 'Submit answers')
  const again = h('button', { type: 'button', hidden: true, onclick: () => reset() }, 'Try again')
  const form = h('form.stack.quiz-take', {
    'aria-label': `${preview ? 'Preview of ' : ''}Quiz: ${quiz.title}`,
    onsubmit: async (e) => {
      e.preventDefault()
      const answers = {}
      for (const q of quiz.questions) {
        if (q.kind === 'short') {
          const v = form.querySelector(`input[name="${CSS.escape(q.id)}"]`).value
          if (v.trim()) answers[q.id] = v
        } else if (q.kind === 'single') {
          const v = form.querySelector(`input[name="${CSS.escape(q.id)}"]:checked`)
          if (v) answers[q.id] = Number(v.value)
        } else {
          const v = [...form.querySelectorAll(`input[name="${CSS.escape(q.id)}"]:checked`)].map((x) => Number(x.value))
          if (v.length) answers[q.id] = v
        }
      }
      submit.disabled = true
      result.textContent = 'Checking…'
      let r
      try {
        r = preview ? gradeLocally(quiz, answers) : await post(`/quizzes/${quiz.id}/attempts`, { answers })
      } catch (err) {
        submit.disabled = false
        clear(result, h('p.error', errorText(err)))
        return
      }
      for (const q of quiz.questions) {
        const ok = !!r.results[q.id]
        const m = marks.get(q.id)
        m.textContent = ok ? '✓ Correct' : '✗ Incorrect'
        m.className = 'mark ' + (ok ? 'right' : 'wrong')
      }
      const right = Object.values(r.results).filter(Boolean).length
      const lines = [h('p.grade', { 'data-testid': 'quiz-grade' }, `Score: ${pct(r.score)} (${right} of ${quiz.questions.length} correct) — ${r.passed ? 'passed' : `not passed; the pass mark is ${pct(quiz.pass_score)}`}.`)]
      if (preview) lines.push(h('p.muted', 'Preview: checked in your browser, nothing was recorded.'))
      else if (r.passed && r.lesson_status === 'completed') {
        lines.push(h('p', `Lesson complete. Course progress: ${Math.round(r.progress)}%.`))
        announceProgress({ courseId, lessonId, status: 'completed', progress: r.progress })
      } else if (r.passed) lines.push(h('p.muted', 'Enroll in the course to have your progress recorded.'))
      clear(result, lines)
      again.hidden = false
      form.querySelectorAll('fieldset.question input').forEach((x) => { x.disabled = true })
    }
  }, h('h3', quiz.title), preview ? h('p.muted', 'This is what learners see.') : null,
  h('p.muted', `${quiz.questions.length} question${quiz.questions.length === 1 ? '' : 's'} · pass mark ${pct(quiz.pass_score)}`),
  fields, h('div.row', submit, again), result)

  function reset () {
    form.reset()
    form.querySelectorAll('fieldset.question input').forEach((x) => { x.disabled = false })
    for (const m of marks.values()) { m.textContent = ''; m.className = 'mark' }
    clear(result)
    submit.disabled = false
    again.hidden = true
    form.querySelector('fieldset.question input')?.focus()
  }
  return form
}
