/**
 * Words that dominate breached-password lists (the base words of the most common leaked passwords,
 * lower case, without the digits and symbols people append). Not a breach corpus: it catches the
 * "Password123!" family offline; a k-anonymity breach lookup would be a separate, networked check.
 */
export const COMMON_PASSWORD_WORDS: readonly string[] = [
  // The perennial top of every leak.
  "password", "passwort", "motdepasse", "contraseña", "senha", "parola", "wachtwoord", "haslo",
  "qwerty", "qwertz", "azerty", "asdfgh", "zxcvbn", "abcdef", "abcabc", "iloveyou", "letmein",
  "welcome", "login", "admin", "administrator", "root", "user", "guest", "default", "changeme",
  "secret", "access", "master", "monkey", "dragon", "shadow", "sunshine", "princess", "trustno",
  "whatever", "freedom", "starwars", "superman", "batman", "spiderman", "pokemon", "minecraft",
  "football", "baseball", "basketball", "soccer", "hockey", "golf", "tennis", "cricket", "liverpool",
  "chelsea", "arsenal", "barcelona", "juventus", "yankees", "cowboys", "lakers", "eagles",
  "michael", "jennifer", "jordan", "hunter", "ranger", "buster", "charlie", "andrew", "michelle",
  "jessica", "daniel", "thomas", "robert", "matthew", "joshua", "ashley", "amanda", "nicole",
  "george", "maggie", "ginger", "pepper", "cookie", "cheese", "chocolate", "banana", "orange",
  "flower", "summer", "winter", "spring", "autumn", "sunday", "monday", "friday", "january",
  "february", "march", "april", "june", "july", "august", "september", "october", "november",
  "december", "love", "lovely", "loveme", "lover", "angel", "baby", "babygirl", "sweet", "honey",
  "killer", "matrix", "computer", "internet", "samsung", "google", "apple", "microsoft", "windows",
  "linux", "facebook", "twitter", "instagram", "linkedin", "github", "amazon", "netflix",
  "company", "corporate", "office", "business", "server", "system", "network", "database",
  "identity", "account", "service", "support", "security", "secure", "private", "temp",
  "temporary", "test", "testing", "demo", "sample", "example", "hello", "hellothere", "goodbye",
  "nothing", "everything", "anything", "someone", "somebody", "blink", "pass", "passwd", "passcode",
  "mypass", "mypassword", "newpassword", "oldpassword", "letmeinnow", "openup", "opensesame",
  "blahblah", "qazwsx", "qweasd", "zaq", "wsx", "asdasd", "asdf", "zxcv", "qwer", "aaaa",
  "abc", "xyz", "god", "jesus", "heaven", "hell", "lucky", "money", "dollar", "euro", "bitcoin",
  "ninja", "pirate", "wizard", "warrior", "knight", "legend", "hero", "tiger", "lion", "wolf",
  "eagle", "falcon", "dolphin", "horse", "mustang", "ferrari", "porsche", "mercedes", "corvette",
  "harley", "yamaha", "family", "mother", "father", "sister", "brother", "friend", "friends",
  "forever", "always", "never", "again", "happy", "smile", "music", "guitar", "rockstar", "disney",
];
