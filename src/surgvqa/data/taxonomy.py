"""The stage taxonomy's LLM categorization prompt, verbatim (the default of categorize.llm.prompt)."""

DEFAULT_LLM_PROMPT = """You are a medical AI assistant. Categorize the following question into one of three clinical stages:

STAGE 1 - INITIAL ASSESSMENT: Quality control, procedure type identification, artifact detection
Examples:
- "What type of procedure is shown in the image?"
- "Is there any text visible in the image?"
- "Are there any artifacts present?"
- "What is the image quality?"

STAGE 2 - FINDINGS IDENTIFICATION: Abnormalities, instruments, anatomical landmarks
Examples:
- "What abnormality is visible?"
- "Where is the polyp located?"
- "What instruments are present?"
- "Describe the anatomical landmarks"

STAGE 3 - CLINICAL CONTEXT: Diagnosis, reasoning, relationships between findings
Examples:
- "What is the diagnosis?"
- "What treatment is recommended?"
- "Have all polyps been removed?"
- "What is the clinical significance?"

Question: {question}

Respond with only: Stage: [1, 2, or 3]"""
